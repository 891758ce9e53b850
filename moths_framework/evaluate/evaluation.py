"""Evaluate a prediction folder: every number of ``metrics.json`` and the report, in one pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moths_framework.evaluate.answers import RolledUp, rolled_up_answers
from moths_framework.evaluate.folder_reader import PredictionFolder, RankOutputs
from moths_framework.evaluate.json_numbers import nan_as_null
from moths_framework.evaluate.metrics import RankMetrics, rank_metrics
from moths_framework.evaluate.novelty_auroc import NoveltySummary, summarise_novelty
from moths_framework.evaluate.other_class import OtherSummary, summarise_other
from moths_framework.evaluate.reliability import (
    ECE_BINS,
    CoverageCurve,
    Reliability,
    coverage_curve,
    reliability,
)
from moths_framework.inference.prediction import OTHER_PREDICTION

__all__ = ["Evaluation", "RollUpRank", "evaluate_folder"]


@dataclass(frozen=True)
class RollUpRank:
    """Rolled-up answers given at one rank, with the folder's thresholds and roll-up
    method (``correct``: the answer is the image's true class at that rank)."""

    rank: str
    threshold: float
    answered: int
    correct: int


@dataclass(frozen=True)
class Evaluation:
    """Everything ``moths-evaluate`` reports about one prediction folder.

    Rows whose image could not be read are counted in ``errors`` and left out
    of every metric. ``novelty`` is ``None`` when the folder has no novelty scores.
    """

    folder: PredictionFolder
    images: int
    errors: int
    ranks: dict[str, RankMetrics]
    outputs: dict[str, RankOutputs]
    reliability: dict[str, Reliability]
    coverage: dict[str, CoverageCurve]
    roll_up: list[RollUpRank]
    unconfident: int
    other: OtherSummary
    novelty: NoveltySummary | None = None

    def to_json(self) -> dict:
        """The content of ``metrics.json`` (NaN written as ``null``)."""
        ranks = {}
        for rank, metrics in self.ranks.items():
            ranks[rank] = metrics.summary() | {
                "ece": self.reliability[rank].ece,
                "temperature": self.folder.temperature[rank],
                "classes": {c.name: c.to_dict() for c in metrics.classes},
            }
        any_curve = next(iter(self.coverage.values()))
        return nan_as_null(
            {
                "images": self.images,
                "errors": self.errors,
                "evaluated": self.images - self.errors,
                "ece_bins": ECE_BINS,
                "ranks": ranks,
                "roll_up": {
                    "method": self.folder.rollup or "independent heads",
                    "answered": {r.rank: vars(r) for r in self.roll_up},
                    "unconfident": self.unconfident,
                },
                "coverage": {
                    "thresholds": any_curve.thresholds.round(4).tolist(),
                    **{
                        rank: {"coverage": c.coverage.tolist(), "accuracy": c.accuracy.tolist()}
                        for rank, c in self.coverage.items()
                    },
                },
                "other": self.other.to_dict(),
                "novelty": None if self.novelty is None else self.novelty.to_dict(),
            }
        )


def evaluate_folder(folder: PredictionFolder) -> Evaluation:
    """Compute every metric of ``folder``; vectorised, no per-image Python loops."""
    hierarchy = folder.hierarchy
    ok = np.flatnonzero(folder.ok)
    outputs = {rank: folder.rank_outputs(rank, ok) for rank in hierarchy.ranks}
    ranks = {
        rank: rank_metrics(rank, hierarchy.classes(rank), out) for rank, out in outputs.items()
    }
    calibration = {rank: reliability(o.prob, o.correct) for rank, o in outputs.items()}
    coverage = {rank: coverage_curve(o.prob, o.correct) for rank, o in outputs.items()}
    answers = rolled_up_answers(
        hierarchy,
        {rank: folder.logits[rank][ok] for rank in hierarchy.ranks},
        folder.temperature,
        folder.thresholds,
        folder.rollup,
    )
    roll_up = [
        RollUpRank(
            rank=rank,
            threshold=folder.thresholds[rank],
            answered=int(np.sum(answers.rank == i)),
            correct=int(
                np.sum((answers.rank == i) & (answers.path[rank][0] == outputs[rank].targets))
            ),
        )
        for i, rank in enumerate(answers.order)
    ]
    species = hierarchy.ranks[0]
    other = summarise_other(
        folder.species[ok],
        outputs[species].targets,
        outputs[species].pred,
        _answer_names(folder, answers),
        hierarchy.classes(species),
    )
    novelty = None
    if folder.novelty_score is not None:
        novelty = summarise_novelty(
            hierarchy, folder.species[ok], folder.novelty_score[ok], folder.novelty_threshold
        )
    return Evaluation(
        folder=folder,
        images=len(folder),
        errors=len(folder) - len(ok),
        ranks=ranks,
        outputs=outputs,
        reliability=calibration,
        coverage=coverage,
        roll_up=roll_up,
        unconfident=int(np.sum(~answers.confident)),
        other=other,
        novelty=novelty,
    )


def _answer_names(folder: PredictionFolder, answers: RolledUp) -> np.ndarray:
    """The rolled-up answer per row, named as ``moths-infer`` names it."""
    names = np.empty(len(answers.rank), dtype=object)
    index, _ = answers.answer()
    for i, rank in enumerate(answers.order):
        classes = np.array([OTHER_PREDICTION, *folder.hierarchy.classes(rank)[1:]], dtype=object)
        rows = answers.rank == i
        names[rows] = classes[index[rows]]
    return names
