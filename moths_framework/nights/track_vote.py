"""A track's answer: a confidence-weighted vote of its detections' answers, rolled up.

``detections.csv`` keeps, per crop and rank, the class the answer came from and its
probability (``species``, ``species_prob``, ...). At each rank every detection votes
for its class with its probability as the weight; the class with the most weight
wins. The track's probability of the winner is its share of the weight of the two
strongest classes (how clearly it beats its closest rival) times the mean
probability its voters gave it (how sure they were): ten sure crops that agree give
about their own probability, a track split between two species half of it, one
unsure crop its own probability. Crops voting for third classes do not lower it:
they do not tell the winner from its rival (mistakes scattered over many classes
are noise, a rival that keeps coming back is doubt), so seven crops for a species
and three for three other species weigh like seven against one. One blurred frame
cannot outvote ten sharp ones.

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
    given_votes = [a for a in given if not a.novel]
    best = {}
    for rank in order:
        weight: dict[str, float] = defaultdict(float)
        voters: dict[str, int] = defaultdict(int)
        for answer in given_votes:
            name, prob = answer.classes[rank]
            weight[name] += prob
            voters[name] += 1
        # ties: the same class every run
        name, *rivals = sorted(weight, key=lambda n: (weight[n], n), reverse=True)
        rival = weight[rivals[0]] if rivals else 0.0
        share = weight[name] / max(weight[name] + rival, 1e-12)
        best[rank] = (name, share * weight[name] / voters[name])
    prediction, rank, prob, confident = roll_up(best, order, thresholds)
    return TrackAnswer(prediction, rank, prob, confident)


def specificity_order(ranks: Sequence[str], names: Mapping[str, set[str]]) -> tuple[str, ...]:
    """Ranks from most to least specific without the hierarchy: the first (species), then
    the others by the number of classes seen at each (more: narrower), ties broken as
    :meth:`~moths_framework.hierarchy.LabelHierarchy.ranks_by_specificity` does."""
    others = sorted(reversed(ranks[1:]), key=lambda rank: -len(names.get(rank, ())))
    return (ranks[0], *others)
