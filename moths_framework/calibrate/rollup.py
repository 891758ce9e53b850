"""Choosing the roll-up method by measurement on validation images.

Each method of :data:`~moths_framework.inference.rollup.ROLLUP_METHODS` gives
per-rank probabilities; the answer follows the hierarchy-consistent path. The
methods are compared by accuracy at equal coverage: at every rank, the images
are ordered by the path's probability and the accuracy of the k most
confident is averaged over every k (the area under the accuracy-coverage
curve), then averaged over the ranks. The highest wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.rollup import (
    ROLLUP_METHODS,
    consistent_path,
    rank_probabilities,
    species_ancestry,
)

__all__ = ["RollupChoice", "choose_rollup", "rollup_paths", "selective_accuracy"]


@dataclass(frozen=True)
class RollupChoice:
    """``method``: the winner; ``scores``: method -> rank -> area under accuracy-coverage."""

    method: str
    scores: dict[str, dict[str, float]]

    def mean(self, method: str) -> float:
        return float(np.mean(list(self.scores[method].values())))


def selective_accuracy(prob: np.ndarray, correct: np.ndarray) -> float:
    """Mean over k of the accuracy of the k most probable answers (NaN without rows)."""
    if len(prob) == 0:
        return float("nan")
    ordered = correct[np.argsort(-prob, kind="stable")]
    return float(np.mean(np.cumsum(ordered) / np.arange(1, len(ordered) + 1)))


def rollup_paths(
    probs: Mapping[str, np.ndarray], hierarchy: LabelHierarchy, method: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The consistent path of every image under ``method``: rank -> (class, probability)."""
    ancestry = species_ancestry(hierarchy)
    ranked = rank_probabilities(probs, method, ancestry, hierarchy.ranks[0])
    return consistent_path(ranked, ancestry, hierarchy.ranks_by_specificity())


def choose_rollup(
    probs: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    hierarchy: LabelHierarchy,
    methods: Sequence[str] = ROLLUP_METHODS,
) -> RollupChoice:
    """Measure every method on (``probs``, ``targets``); ties go to the earlier method."""
    scores = {}
    for method in methods:
        paths = rollup_paths(probs, hierarchy, method)
        scores[method] = {
            rank: selective_accuracy(prob, index == targets[rank])
            for rank, (index, prob) in paths.items()
        }
    means = {m: float(np.nanmean(list(s.values()))) for m, s in scores.items()}
    best = max(methods, key=lambda m: (means[m], -methods.index(m)))
    return RollupChoice(best, scores)
