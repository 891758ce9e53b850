"""The rolled-up answer of many images at once, exactly as ``moths-infer`` gives it.

``OnnxClassifier`` rolls up one image at a time; a prediction folder holds
logits for thousands. :func:`rolled_up_answers` does the same arithmetic on
all rows (in chunks, so a 2,700-class head never needs a full float64 copy):
``softmax(logits / T)`` per rank, then

- without a roll-up method (an uncalibrated model): each rank's top-1, and the
  walk of :func:`~moths_framework.inference.prediction.roll_up`;
- with one (``moths-calibrate`` chose it): the method's per-rank probabilities
  (:func:`~moths_framework.inference.rollup.rank_probabilities`), the
  hierarchy-consistent path (:func:`~moths_framework.inference.rollup.consistent_path`),
  and the first class on that path, from species up, that reaches its threshold.

Either way, when no rank reaches its threshold the answer is the least specific
rank's class with ``confident`` false. No torch import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.prediction import softmax
from moths_framework.inference.rollup import (
    check_rollup_method,
    consistent_path,
    rank_probabilities,
    species_ancestry,
)

__all__ = ["RolledUp", "rolled_up_answers"]

_CHUNK = 4096  # rows per step: bounds the float64 probabilities of a large head


@dataclass(frozen=True)
class RolledUp:
    """The roll-up of N images.

    Attributes:
        order: ranks from most to least specific.
        path: rank -> (class index, probability) per image: the class the roll-up
            considered at that rank (the consistent path, or the top-1 per head).
        rank: index into ``order`` of the rank answered at, per image.
        confident: whether that rank's probability reached its threshold.
    """

    order: tuple[str, ...]
    path: dict[str, tuple[np.ndarray, np.ndarray]]
    rank: np.ndarray
    confident: np.ndarray

    def answer(self) -> tuple[np.ndarray, np.ndarray]:
        """(class index at the answered rank, its probability) per image."""
        index = np.zeros(len(self.rank), dtype=np.int64)
        prob = np.zeros(len(self.rank))
        for i, rank in enumerate(self.order):
            rows = self.rank == i
            index[rows] = self.path[rank][0][rows]
            prob[rows] = self.path[rank][1][rows]
        return index, prob


def rolled_up_answers(
    hierarchy: LabelHierarchy,
    logits: Mapping[str, np.ndarray],
    temperature: Mapping[str, float],
    thresholds: Mapping[str, float],
    rollup: str | None = None,
) -> RolledUp:
    """Roll up every row of ``logits`` (rank -> finite float [N, C]), as ``moths-infer`` does.

    Args:
        hierarchy: the model's label hierarchy.
        logits: rank -> raw logits; only rows of images that were read.
        temperature: rank -> softmax temperature.
        thresholds: rank -> the probability an answer at that rank must reach.
        rollup: ``heads``, ``species_sum``, ``fused``, or ``None`` for the
            independent walk of an uncalibrated model.

    Raises:
        ValueError: an unknown roll-up method.
    """
    if rollup is not None:
        check_rollup_method(rollup)
    order = tuple(hierarchy.ranks_by_specificity())
    n = len(logits[order[0]])
    path = {rank: (np.zeros(n, np.int64), np.zeros(n)) for rank in order}
    ancestry = species_ancestry(hierarchy) if rollup is not None else None
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        probs = {rank: softmax(logits[rank][rows], temperature[rank]) for rank in order}
        if rollup is None:
            found = {rank: (p.argmax(axis=1), p.max(axis=1)) for rank, p in probs.items()}
        else:
            ranked = rank_probabilities(probs, rollup, ancestry, hierarchy.ranks[0])
            found = consistent_path(ranked, ancestry, order)
        for rank, (index, prob) in found.items():
            path[rank][0][rows] = index
            path[rank][1][rows] = prob
    answered = np.full(n, len(order) - 1, dtype=np.int64)
    confident = np.zeros(n, dtype=bool)
    for i, rank in reversed(list(enumerate(order))):  # the most specific rank wins
        clears = path[rank][1] >= thresholds[rank]
        answered[clears] = i
        confident |= clears
    return RolledUp(order, path, answered, confident)
