"""What a prediction is: per-rank top-k, and the roll-up to one answer.

The roll-up walks the ranks from the most specific to the least specific and
answers with the first rank whose top-1 probability clears that rank's
threshold. When none does, it still answers, with the least specific rank's
top-1, and marks the answer ``confident=False`` (an automated pipeline wants
an answer on every image; the flag and probability say how much to trust it).
A top-1 ``Other`` means "not one of the trained species" and is reported as
:data:`OTHER_PREDICTION` at whatever rank the walk stops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from moths_framework.hierarchy import OTHER

__all__ = [
    "DEFAULT_THRESHOLD",
    "OTHER_PREDICTION",
    "Prediction",
    "check_thresholds",
    "roll_up",
    "softmax",
    "top_k",
]

OTHER_PREDICTION = f"{OTHER} (not one of the trained species)"
DEFAULT_THRESHOLD = 0.5

Scored = tuple[str, float]


@dataclass(frozen=True)
class Prediction:
    """The result for one input image.

    Attributes:
        source: the input's path, or ``<image i>`` for an in-memory image.
        top_k: rank -> the k most probable (class name, probability), best first.
        prediction: the rolled-up answer (a class name or :data:`OTHER_PREDICTION`);
            ``None`` when the image could not be classified.
        prediction_rank: the rank of ``prediction``.
        prediction_prob: the probability of ``prediction`` at that rank.
        confident: whether ``prediction_prob`` cleared its rank's threshold.
        error: why the image could not be classified (``None`` when it was).
        path: for a calibrated model, rank -> (class name, probability) along the
            hierarchy-consistent path the answer was taken from (see
            :mod:`.rollup`); ``None`` for the independent walk.
        novelty_score: distance from the trained species (higher: less like
            them), when the model has a novelty detector.
        novel: whether ``novelty_score`` exceeds the model's novelty threshold.
        features: the model's ``features`` output for the image (float32 ``[F]``), when
            the classifier was opened with ``features=True``.
    """

    source: str
    top_k: dict[str, list[Scored]] = field(default_factory=dict)
    prediction: str | None = None
    prediction_rank: str | None = None
    prediction_prob: float | None = None
    confident: bool = False
    error: str | None = None
    path: dict[str, Scored] | None = None
    novelty_score: float | None = None
    novel: bool | None = None
    features: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the image was classified."""
        return self.error is None

    def top1(self, rank: str) -> Scored:
        """The most probable (class name, probability) at ``rank``."""
        return self.top_k[rank][0]

    def answer_at(self, rank: str) -> Scored:
        """(class name, probability) reported at ``rank``: the consistent path's class
        when there is one, else the top-1."""
        return self.path[rank] if self.path is not None else self.top1(rank)


def check_thresholds(
    ranks: Sequence[str], thresholds: Mapping[str, float] | None
) -> dict[str, float]:
    """Every rank's threshold: the given ones, :data:`DEFAULT_THRESHOLD` for the rest.

    Raises:
        ValueError: an unknown rank, or a value outside [0, 1].
    """
    given = dict(thresholds or {})
    unknown = sorted(set(given) - set(ranks))
    if unknown:
        raise ValueError(
            f"threshold for unknown rank(s) {', '.join(unknown)}; the ranks are {', '.join(ranks)}"
        )
    for rank, value in given.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold of {rank!r} must be in [0, 1], got {value}")
    return {rank: float(given.get(rank, DEFAULT_THRESHOLD)) for rank in ranks}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``; ``-inf`` logits get probability 0."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)
    return weights / weights.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, classes: Sequence[str], k: int, allowed: int) -> list[Scored]:
    """The ``k`` most probable classes of one row, among the ``allowed`` non-masked ones."""
    order = np.argsort(-probs, kind="stable")[: max(1, min(k, allowed))]
    return [(classes[i], float(probs[i])) for i in order]


def roll_up(
    top1: Mapping[str, Scored], order: Sequence[str], thresholds: Mapping[str, float]
) -> tuple[str, str, float, bool]:
    """The answer for one image: (prediction, rank, probability, confident).

    Args:
        top1: rank -> the top-1 (class name, probability) at that rank.
        order: ranks from most to least specific (``LabelHierarchy.ranks_by_specificity()``).
        thresholds: rank -> the probability the top-1 must reach.
    """
    for rank in order:
        name, prob = top1[rank]
        if prob >= thresholds[rank]:
            return _reported(name), rank, prob, True
    name, prob = top1[order[-1]]
    return _reported(name), order[-1], prob, False


def _reported(name: str) -> str:
    return OTHER_PREDICTION if name == OTHER else name
