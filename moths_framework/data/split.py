"""Stratified, reproducible train/val/test split and sampling weights. No torch."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from moths_framework.data.sources import Sample

__all__ = ["MIN_SPLIT_IMAGES", "Split", "sampling_weights", "stratified_split"]

# A species needs one image in each of train, val and test to be split at all.
MIN_SPLIT_IMAGES = 3


@dataclass(frozen=True)
class Split:
    """Indices into the sample list for each phase."""

    train: list[int]
    val: list[int]
    test: list[int]


def _held_out(n: int, fraction: float) -> int:
    """Images of a species with ``n`` images that go to val (and as many to test)."""
    if n < MIN_SPLIT_IMAGES or fraction <= 0:
        return 0
    return min(max(1, round(n * fraction)), (n - 1) // 2)


def stratified_split(samples: Sequence[Sample], test_fraction: float, seed: int) -> Split:
    """Split each species on its own: ``test_fraction`` to val, as much again to test.

    Every species with at least :data:`MIN_SPLIT_IMAGES` images gets at least
    one image in val and in test and keeps at least one for training; rarer
    species stay in training only (they cannot be evaluated). Each species is
    shuffled with a generator seeded by (seed, species name), so adding a
    species or images of another species leaves this species' split alone.

    Args:
        samples: the data source's samples.
        test_fraction: fraction of each species for val, and again for test.
        seed: the split seed.
    """
    if not 0 <= test_fraction < 0.5:
        raise ValueError(f"test_fraction must be in [0, 0.5), got {test_fraction}")
    by_species: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_species[s.species].append(i)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for species in sorted(by_species):
        idx = sorted(by_species[species], key=lambda i: str(samples[i].path))
        random.Random(f"{seed}:{species}").shuffle(idx)
        k = _held_out(len(idx), test_fraction)
        val += idx[:k]
        test += idx[k : 2 * k]
        train += idx[2 * k :]
    return Split(sorted(train), sorted(val), sorted(test))


def sampling_weights(classes: Sequence[int], exponent: float) -> list[float]:
    """Per-sample weights ``(1 / class frequency) ** exponent``.

    ``exponent`` 0 samples as the data comes, 1 balances the classes fully, in
    between softens the long tail (the seed's ``weighted_sampling_fraction``).
    """
    counts = Counter(classes)
    return [(1.0 / counts[c]) ** exponent for c in classes]
