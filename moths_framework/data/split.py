"""Stratified train/val/test split that stays put as images are added, and sampling weights.

Every image draws its phase on its own, from a hash of (split seed, the image's
identity), so adding or removing images does not reshuffle the others. Only a
species whose hashes leave val or test empty gets up to two images moved to
fill them. No torch.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moths_framework.atomic_files import write_text_atomically
from moths_framework.csv_cells import spreadsheet_safe_row
from moths_framework.data.sources import Sample

__all__ = [
    "MIN_SPLIT_IMAGES",
    "PHASES",
    "SPLIT_CSV",
    "Split",
    "hash_position",
    "hash_split",
    "sampling_weights",
    "stratified_split",
    "write_split_csv",
]

# A species needs one image in each of val and test, and one more, to be split at all.
MIN_SPLIT_IMAGES = 3
PHASES = ("train", "val", "test")
SPLIT_CSV = "split.csv"


@dataclass(frozen=True)
class Split:
    """Indices into the sample list for each phase, each in increasing order."""

    train: list[int]
    val: list[int]
    test: list[int]

    def phases(self) -> dict[int, str]:
        """Sample index -> ``train``, ``val`` or ``test``."""
        return {i: phase for phase in PHASES for i in getattr(self, phase)}


def hash_position(seed: int, identity: str) -> float:
    """Where an image falls in [0, 1), from (seed, identity) alone: uniform and stable."""
    digest = hashlib.sha256(f"{seed}\0{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def stratified_split(samples: Sequence[Sample], test_fraction: float, seed: int) -> Split:
    """Split each species on its own, every image by its own hash.

    An image whose :func:`hash_position` (of ``seed`` and
    :attr:`Sample.split_identity`) is below ``test_fraction`` goes to val,
    below twice that to test, else to train. So each image is in val with
    probability ``test_fraction`` and in test likewise, and the per-species
    fractions match ``test_fraction`` in expectation.

    Guarantees:

    - A species with at least :data:`MIN_SPLIT_IMAGES` images has at least one
      val and one test image; a rarer one is train-only (it cannot be evaluated).
    - Adjustments: where the hashes leave a species' val or test part empty, at
      most two of its images are moved to fill it: the lowest-hash training
      images while fewer than two images hash into val or test, otherwise the
      lowest-hash test image to val or the highest-hash val image to test.
      Every other image sits where its own hash puts it.
    - Hence, for a species with at least :data:`MIN_SPLIT_IMAGES` images before
      and after: adding images (of any species) never moves an image from train
      to val or test, and removing images never moves one from val or test to
      train. Any image that moves at all is an adjusted one, before or after.
    - The one exception: when a species reaches :data:`MIN_SPLIT_IMAGES`
      images, its first val and test images may be ones it trained on before.
    - Not guaranteed: at least one training image. A small species whose
      images all hash into val or test (probability ``(2 * test_fraction) ** n``
      for ``n`` images) has none; keeping one back would have to move an image
      from train into val or test when another image is added.

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
    parts: dict[str, list[int]] = {phase: [] for phase in PHASES}
    for indices in by_species.values():
        order = {i: _sort_key(samples[i], seed) for i in indices}
        for i, phase in _species_phases(order, test_fraction).items():
            parts[phase].append(i)
    return Split(*(sorted(parts[phase]) for phase in PHASES))


def hash_split(identities: Sequence[str], test_fraction: float, seed: int) -> Split:
    """Split items that have no species (trap frames) as :func:`stratified_split` splits
    one species: each item by :func:`hash_position` of (``seed``, its identity), with the
    same guarantees (at least one val and one test item from :data:`MIN_SPLIT_IMAGES`
    items on; adding items never moves one from train to val or test).

    Args:
        identities: what names each item for good, e.g. a frame's path relative to its
            dataset, or its content's sha256.
        test_fraction: fraction for val, and again for test.
        seed: the split seed.
    """
    if not 0 <= test_fraction < 0.5:
        raise ValueError(f"test_fraction must be in [0, 0.5), got {test_fraction}")
    order = {i: (hash_position(seed, identity), identity) for i, identity in enumerate(identities)}
    phases = _species_phases(order, test_fraction)
    return Split(*([i for i in order if phases[i] == phase] for phase in PHASES))


def _sort_key(sample: Sample, seed: int) -> tuple[float, str, str]:
    # Hash position first; identity and path only break (astronomically rare) ties.
    identity = sample.split_identity
    return hash_position(seed, identity), identity, str(sample.path)


def _species_phases(order: dict[int, tuple], fraction: float) -> dict[int, str]:
    """The phase of each image of one species; ``order[i][0]`` is image i's hash position."""
    phases = dict.fromkeys(order, "train")
    if len(order) < MIN_SPLIT_IMAGES or fraction <= 0:
        return phases
    val = [i for i in order if order[i][0] < fraction]
    test = [i for i in order if fraction <= order[i][0] < 2 * fraction]
    # Only the lowest-hash training images are ever held out, so a training
    # image stays in training when images are added (they can only outrank it).
    train = (i for i in order if order[i][0] >= 2 * fraction)
    held_out = heapq.nsmallest(max(0, 2 - len(val) - len(test)), train, key=order.__getitem__)
    if not val and not test:
        val, test = held_out[:1], held_out[1:]
    elif not val:
        val = held_out or [min(test, key=order.__getitem__)]
        test = [i for i in test if i not in val]
    elif not test:
        test = held_out or [max(val, key=order.__getitem__)]
        val = [i for i in val if i not in test]
    phases.update(dict.fromkeys(val, "val"))
    phases.update(dict.fromkeys(test, "test"))
    return phases


def write_split_csv(run_dir: str | Path, samples: Sequence[Sample], split: Split) -> Path:
    """Write ``<run_dir>/split.csv``: ``path,species,phase`` for every sample, in the
    source's order, atomically; the folder is created if missing. Returns the file."""
    path = Path(run_dir) / SPLIT_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    phases = split.phases()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("path", "species", "phase"))
    rows = ((str(s.path), s.species, phases[i]) for i, s in enumerate(samples))
    writer.writerows(map(spreadsheet_safe_row, rows))  # no formulas for spreadsheets
    write_text_atomically(path, text.getvalue())
    return path


def sampling_weights(classes: Sequence[int], exponent: float) -> list[float]:
    """Per-sample weights ``(1 / class frequency) ** exponent``.

    ``exponent`` 0 samples as the data comes, 1 balances the classes fully, in
    between softens the long tail (the seed's ``weighted_sampling_fraction``).
    """
    counts = Counter(classes)
    return [(1.0 / counts[c]) ** exponent for c in classes]
