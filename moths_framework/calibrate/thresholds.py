"""Roll-up thresholds per rank, chosen for a target precision on validation images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RankThreshold", "choose_thresholds", "precision_threshold"]

UNREACHED = 1.0  # a rank that cannot reach the target answers only at probability 1


@dataclass(frozen=True)
class RankThreshold:
    """The threshold chosen for one rank, and what it gives on the calibration images.

    Attributes:
        rank: the rank.
        threshold: the probability its answer must reach.
        reached: whether some threshold reaches the target precision at this rank;
            if not, the threshold is 1.0 and answers fall back to the next rank.
        answered: images the roll-up answers at this rank.
        precision: precision of those answers (NaN when none).
        candidates: images no more specific rank answered (0: nothing to measure).
    """

    rank: str
    threshold: float
    reached: bool
    answered: int
    precision: float
    candidates: int = 0


def precision_threshold(prob: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """The smallest ``t`` such that the answers with ``prob >= t`` are at least ``target``
    precise; ``None`` when no threshold reaches it (or there are no rows)."""
    if len(prob) == 0:
        return None
    order = np.argsort(-prob, kind="stable")
    p, hits = prob[order], np.cumsum(correct[order])
    # the set {prob >= t} ends at the last of each run of equal probabilities
    ends = np.flatnonzero(np.append(p[1:] != p[:-1], True))
    precision = hits[ends] / (ends + 1)
    good = ends[precision >= target]
    return float(p[good[-1]]) if len(good) else None


def choose_thresholds(
    path_prob: Mapping[str, np.ndarray],
    path_correct: Mapping[str, np.ndarray],
    order: Sequence[str],
    target: float,
) -> list[RankThreshold]:
    """Thresholds in roll-up order: each rank's on the images no more specific rank answered.

    Args:
        path_prob: rank -> probability of the roll-up's candidate per image.
        path_correct: rank -> whether that candidate is right.
        order: ranks from most to least specific.
        target: the precision the answers at each rank must reach.
    """
    remaining = np.ones(len(path_prob[order[0]]), dtype=bool)
    chosen = []
    for rank in order:
        prob, correct = path_prob[rank][remaining], path_correct[rank][remaining]
        found = precision_threshold(prob, correct, target)
        threshold = UNREACHED if found is None else found
        answers = prob >= threshold
        precision = float(correct[answers].mean()) if answers.any() else float("nan")
        chosen.append(
            RankThreshold(
                rank, threshold, found is not None, int(answers.sum()), precision, len(prob)
            )
        )
        answered = np.zeros_like(remaining)
        answered[np.flatnonzero(remaining)[answers]] = True
        remaining &= ~answered
    return chosen
