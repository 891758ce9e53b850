"""How far the probabilities can be trusted: reliability, ECE, coverage, the roll-up.

All vectorised over images; nothing here is per-image Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ECE_BINS",
    "CoverageCurve",
    "Reliability",
    "coverage_curve",
    "reliability",
    "roll_up_ranks",
]

ECE_BINS = 15


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability in equal-width confidence bins.

    Attributes:
        edges: the bin edges, ``bins + 1`` values from 0 to 1.
        count: images per bin.
        accuracy: fraction correct per bin (NaN for an empty bin).
        confidence: mean top-1 probability per bin (NaN for an empty bin).
        ece: expected calibration error, sum over bins of
            ``count / N * |accuracy - confidence|``.
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def reliability(prob: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Reliability of top-1 probabilities ``prob``: bins ``(lo, hi]``, the first ``[0, hi]``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, prob, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    conf = np.bincount(index, weights=prob, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits / count
        confidence = conf / count
    total = max(len(prob), 1)
    gaps = np.where(count > 0, np.abs(accuracy - confidence), 0.0)
    return Reliability(edges, count, accuracy, confidence, float(np.sum(count / total * gaps)))


@dataclass(frozen=True)
class CoverageCurve:
    """Answering at one rank only when the top-1 probability reaches a threshold.

    Attributes:
        thresholds: the thresholds swept, ascending.
        coverage: fraction of images whose top-1 probability is >= the threshold.
        accuracy: accuracy among those images (NaN when there are none).
    """

    thresholds: np.ndarray
    coverage: np.ndarray
    accuracy: np.ndarray


def coverage_curve(
    prob: np.ndarray, correct: np.ndarray, thresholds: np.ndarray | None = None
) -> CoverageCurve:
    """Coverage and accuracy at each threshold (default 0, 0.01, ..., 1)."""
    thresholds = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds)
    order = np.argsort(prob, kind="stable")
    sorted_prob = prob[order]
    # correct answers among the images at or above each position, from the top down
    hits_above = np.concatenate([np.cumsum(correct[order][::-1])[::-1], [0]])
    start = np.searchsorted(sorted_prob, thresholds, side="left")
    answered = len(prob) - start
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits_above[start] / answered
    return CoverageCurve(thresholds, answered / max(len(prob), 1), accuracy)


def roll_up_ranks(
    probs: Mapping[str, np.ndarray], order: Sequence[str], thresholds: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The roll-up of :func:`moths_framework.inference.prediction.roll_up`, for many images.

    Args:
        probs: rank -> top-1 probability per image.
        order: ranks from most to least specific.
        thresholds: rank -> the probability the top-1 must reach.

    Returns:
        (index into ``order`` of the rank answered at, confident) per image.
    """
    n = len(next(iter(probs.values())))
    answered = np.full(n, len(order) - 1, dtype=np.int64)
    confident = np.zeros(n, dtype=bool)
    for i, rank in reversed(list(enumerate(order))):  # the most specific rank wins
        clears = probs[rank] >= thresholds[rank]
        answered[clears] = i
        confident |= clears
    return answered, confident
