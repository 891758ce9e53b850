"""Evaluate a prediction folder: every number of ``metrics.json`` and the report, in one pass."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moths_framework.evaluate.folder import PredictionFolder, RankOutputs
from moths_framework.evaluate.metrics import RankMetrics, rank_metrics
from moths_framework.evaluate.other_class import OtherSummary, summarise_other
from moths_framework.evaluate.reliability import (
    ECE_BINS,
    CoverageCurve,
    Reliability,
    coverage_curve,
    reliability,
    roll_up_ranks,
)
from moths_framework.inference.prediction import OTHER_PREDICTION

__all__ = ["Evaluation", "RollUpRank", "evaluate_folder"]


@dataclass(frozen=True)
class RollUpRank:
    """Rolled-up answers given at one rank, with the folder's thresholds."""

    rank: str
    threshold: float
    answered: int
    correct: int


@dataclass(frozen=True)
class Evaluation:
    """Everything ``moths-evaluate`` reports about one prediction folder.

    Rows whose image could not be read are counted in ``errors`` and left out
    of every metric.
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
        return _finite(
            {
                "images": self.images,
                "errors": self.errors,
                "evaluated": self.images - self.errors,
                "ece_bins": ECE_BINS,
                "ranks": ranks,
                "roll_up": {
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
    order = hierarchy.ranks_by_specificity()
    answered, confident = roll_up_ranks(
        {rank: outputs[rank].prob for rank in order}, order, folder.thresholds
    )
    roll_up = [
        RollUpRank(
            rank=rank,
            threshold=folder.thresholds[rank],
            answered=int(np.sum(answered == i)),
            correct=int(np.sum((answered == i) & outputs[rank].correct)),
        )
        for i, rank in enumerate(order)
    ]
    species = hierarchy.ranks[0]
    other = summarise_other(
        folder.species[ok],
        outputs[species].targets,
        outputs[species].pred,
        _answer_names(folder, outputs, order, answered),
        hierarchy.classes(species),
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
        unconfident=int(np.sum(~confident)),
        other=other,
    )


def _answer_names(
    folder: PredictionFolder,
    outputs: dict[str, RankOutputs],
    order: tuple[str, ...],
    answered: np.ndarray,
) -> np.ndarray:
    """The rolled-up answer per row, named as ``moths-infer`` names it."""
    names = np.empty(len(answered), dtype=object)
    for i, rank in enumerate(order):
        classes = np.array([OTHER_PREDICTION, *folder.hierarchy.classes(rank)[1:]], dtype=object)
        rows = answered == i
        names[rows] = classes[outputs[rank].pred[rows]]
    return names


def _finite(value):
    """``value`` with every NaN float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
