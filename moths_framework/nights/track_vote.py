"""A track's answer: a confidence-weighted vote of its detections' answers, rolled up.

``detections.csv`` keeps, per crop and rank, the class the answer came from and its
probability (``species``, ``species_prob``, ...). A track's score for a class at a
rank is the sum of the probabilities of the detections whose class at that rank it
is, over the number of detections that vote: the track's mean probability of that
class, counting 0 where a crop had another class on top (its true probability there
is not kept, so the score is a lower bound). A sure crop weighs more than an unsure
one; one blurred frame cannot outvote ten sharp ones.

The roll-up is moths-infer's (:func:`moths_framework.inference.prediction.roll_up`):
from the most specific rank to the least, the first rank whose best score clears its
threshold answers; when none does, the least specific rank's best answers with
``confident`` false.

Novelty: a detection the model's novelty detector marked ``novel`` votes for no
class. When most of a track's detections are novel, the track answers
``Other (not one of the trained species)`` at the most specific rank, its
probability the share of novel detections. No torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from moths_framework.inference.prediction import OTHER_PREDICTION, roll_up

__all__ = ["DetectionAnswer", "TrackAnswer", "specificity_order", "vote"]


@dataclass(frozen=True)
class DetectionAnswer:
    """What the classifier said of one crop: rank -> (class, probability); ``novel``
    when the model has a novelty detector."""

    classes: Mapping[str, tuple[str, float]]
    novel: bool | None = None


@dataclass(frozen=True)
class TrackAnswer:
    """A track's answer, with the meaning of moths-infer's ``prediction`` columns."""

    prediction: str
    rank: str
    prob: float
    confident: bool


def vote(
    answers: Sequence[DetectionAnswer | None],
    order: Sequence[str],
    thresholds: Mapping[str, float],
) -> TrackAnswer | None:
    """The answer of a track whose detections said ``answers`` (``None``: a crop without
    an answer, which does not vote); ``None`` when no detection has one.

    Args:
        answers: the track's detections' answers.
        order: ranks from most to least specific.
        thresholds: rank -> the score the best class must reach.
    """
    given = [a for a in answers if a is not None]
    if not given:
        return None
    novel = sum(1 for a in given if a.novel)
    if novel * 2 > len(given):
        return TrackAnswer(OTHER_PREDICTION, order[0], novel / len(given), True)
    voters = [a for a in given if not a.novel]
    best = {}
    for rank in order:
        scores: dict[str, float] = defaultdict(float)
        for answer in voters:
            name, prob = answer.classes[rank]
            scores[name] += prob
        name = max(scores, key=lambda n: (scores[n], n))  # ties: the same class every run
        best[rank] = (name, scores[name] / len(voters))
    prediction, rank, prob, confident = roll_up(best, order, thresholds)
    return TrackAnswer(prediction, rank, prob, confident)


def specificity_order(ranks: Sequence[str], names: Mapping[str, set[str]]) -> tuple[str, ...]:
    """Ranks from most to least specific without the hierarchy: the first (species), then
    the others by the number of classes seen at each (more: narrower), ties broken as
    :meth:`~moths_framework.hierarchy.LabelHierarchy.ranks_by_specificity` does."""
    others = sorted(reversed(ranks[1:]), key=lambda rank: -len(names.get(rank, ())))
    return (ranks[0], *others)
