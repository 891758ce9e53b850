"""One calibration pass over model outputs: tau, temperatures, roll-up, thresholds, novelty.

Works on arrays (logits, features, targets), so it is testable without images;
:mod:`moths_framework.calibrate.run` gets those arrays from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moths_framework.calibrate.novelty_fit import FALSE_POSITIVE_RATE, choose_novelty_detector
from moths_framework.calibrate.rollup import choose_rollup, rollup_paths
from moths_framework.calibrate.tau import choose_tau, shot_accuracy, tau_logits
from moths_framework.calibrate.temperature import fit_temperature, negative_log_likelihood
from moths_framework.calibrate.thresholds import choose_thresholds
from moths_framework.evaluate.novelty_auroc import seen_in_training
from moths_framework.evaluate.reliability import reliability
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.prediction import softmax

__all__ = [
    "MIN_CALIBRATION_IMAGES",
    "Calibration",
    "CalibrationError",
    "ModelOutputs",
    "calibrate_outputs",
    "check_calibration_images",
    "known_species",
]

CALIBRATION_FORMAT = 1
MIN_CALIBRATION_IMAGES = 10  # readable images of trained species, below which nothing is fitted


class CalibrationError(ValueError):
    """The calibration images cannot calibrate this model; the message says what to change."""


@dataclass(frozen=True)
class ModelOutputs:
    """A model's outputs on labelled images (rows that could not be read left out).

    Attributes:
        logits: rank -> float [N, C].
        targets: rank -> true class index [N].
        features: float [N, D].
        species: the data's species name per row.
    """

    logits: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    features: np.ndarray
    species: np.ndarray

    def __len__(self) -> int:
        return len(self.species)

    def with_species_logits(self, rank: str, logits: np.ndarray) -> ModelOutputs:
        return ModelOutputs(
            {**self.logits, rank: logits}, self.targets, self.features, self.species
        )


@dataclass
class Calibration:
    """What a calibration learned, and the measurements behind each choice.

    Attributes:
        temperature: rank -> T.
        thresholds: rank -> roll-up threshold.
        tau_power: P baked into the species head, or ``None`` (tau off).
        novelty: the fitted detector (``None`` when it could not be fitted).
        report: JSON-ready measurements (stored as ``moths.calibration``).
    """

    temperature: dict[str, float]
    thresholds: dict[str, float]
    tau_power: float | None
    novelty: NoveltyDetector | None
    report: dict[str, Any] = field(default_factory=dict)


def known_species(hierarchy: LabelHierarchy, species: np.ndarray) -> np.ndarray:
    """Whether each data species was seen in training (a class, or bundled into Other)."""
    return seen_in_training(hierarchy, species)


def check_calibration_images(hierarchy: LabelHierarchy, val: ModelOutputs) -> None:
    """Refuse calibration images that cannot calibrate the model.

    Raises:
        CalibrationError: no image of a species the model was trained on, fewer
            than :data:`MIN_CALIBRATION_IMAGES` of them, or a rank at which they
            all have one class (its temperature and threshold would mean nothing).
    """
    known = known_species(hierarchy, val.species)
    if not known.any():
        names = sorted(set(val.species.tolist()))
        listed = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise CalibrationError(
            f"none of the {len(val)} readable calibration images is of a species the model was "
            f"trained on (their species: {listed or 'none'}): calibrate on the run's validation "
            "split, or on a --data.source of labelled images of the model's species"
        )
    if known.sum() < MIN_CALIBRATION_IMAGES:
        raise CalibrationError(
            f"only {int(known.sum())} readable calibration image(s) of the model's species, at "
            f"least {MIN_CALIBRATION_IMAGES} are needed: calibrate on the run's validation "
            "split or on a larger --data.source"
        )
    for rank in hierarchy.ranks:
        classes = np.unique(val.targets[rank][known])
        if len(classes) < 2:
            name = hierarchy.classes(rank)[int(classes[0])]
            raise CalibrationError(
                f"rank {rank!r} cannot be calibrated: every calibration image is {name!r} at "
                f"that rank; calibrate on images of at least 2 {rank} classes"
            )


def _top1(
    logits: np.ndarray, targets: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    probs = softmax(logits, temperature)
    return probs.max(axis=1), probs.argmax(axis=1) == targets


def _fit_quality(
    outputs: ModelOutputs, temperature: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Per rank: NLL and ECE (15 bins, top-label) before (T = 1) and after."""
    quality = {}
    for rank, logits in outputs.logits.items():
        y = outputs.targets[rank]
        row = {}
        for when, t in (("before", 1.0), ("after", temperature[rank])):
            prob, correct = _top1(logits, y, t)
            row[f"nll_{when}"] = negative_log_likelihood(logits, y, t)
            row[f"ece_{when}"] = reliability(prob, correct).ece if len(y) else float("nan")
        quality[rank] = row
    return quality


def _tau(
    val: ModelOutputs, species_head: tuple[np.ndarray, np.ndarray], tau: str | float
) -> tuple[float | None, dict[str, Any]]:
    if tau == "off":
        return None, {"power": None}
    weight, bias = species_head
    rank = next(iter(val.logits))
    if tau == "auto":
        choice = choose_tau(val.features, val.targets[rank], weight, bias)
        return choice.power, {"power": choice.power, "chosen_by": "val macro-F1", "f1": choice.f1}
    return float(tau), {"power": float(tau), "chosen_by": "--tau"}


def calibrate_outputs(
    hierarchy: LabelHierarchy,
    val: ModelOutputs,
    test: ModelOutputs | None,
    species_head: tuple[np.ndarray, np.ndarray],
    train_counts: Mapping[int, int],
    target_precision: float = 0.95,
    tau: str | float = "off",
) -> Calibration:
    """Calibrate on ``val`` (report on ``test`` too); see the package doc for each step.

    Args:
        hierarchy: the model's label hierarchy.
        val: outputs on the calibration images (every row readable).
        test: outputs on held-out images for the report, or ``None``.
        species_head: (weight [C, D], bias [C]) of the species head.
        train_counts: species class index -> training images (for the shot groups).
        target_precision: precision the answers at each rank must reach on ``val``.
        tau: ``"off"``, ``"auto"`` or a power P.

    Raises:
        CalibrationError: see :func:`check_calibration_images`.
    """
    check_calibration_images(hierarchy, val)
    species = hierarchy.ranks[0]
    known_val = known_species(hierarchy, val.species)
    val_known = _rows(val, known_val)  # species the model never saw tell nothing about T
    power, tau_report = _tau(val_known, species_head, tau)
    shots_before = _shots(val, test, species, train_counts)
    if power is not None:
        val, test = (
            o.with_species_logits(
                species, tau_logits(o.features, *species_head, power).astype(np.float32)
            )
            if o is not None
            else None
            for o in (val, test)
        )
        val_known = _rows(val, known_val)
    tau_report["shots"] = {
        "before": shots_before,
        "after": _shots(val, test, species, train_counts),
    }
    temperature = {
        r: fit_temperature(val_known.logits[r], val_known.targets[r]) for r in hierarchy.ranks
    }
    probs = {r: softmax(val_known.logits[r], temperature[r]) for r in hierarchy.ranks}
    rollup = choose_rollup(probs, val_known.targets, hierarchy)
    paths = rollup_paths(probs, hierarchy, rollup.method)
    chosen = choose_thresholds(
        {r: p for r, (_, p) in paths.items()},
        {r: i == val_known.targets[r] for r, (i, _) in paths.items()},
        hierarchy.ranks_by_specificity(),
        target_precision,
    )
    novelty, novelty_report = _novelty(hierarchy, val_known, test)
    report = {
        "format": CALIBRATION_FORMAT,
        "images": {"val": len(val_known), "test": 0 if test is None else len(test)},
        "temperature": temperature,
        "fit": {"val": _fit_quality(val_known, temperature)},
        "target_precision": target_precision,
        "thresholds": {c.rank: c.threshold for c in chosen},
        "threshold_details": {
            c.rank: {
                "reached": c.reached,
                "answered": c.answered,
                "precision": c.precision,
                "candidates": c.candidates,
            }
            for c in chosen
        },
        "rollup": {"method": rollup.method, "accuracy_coverage_area": rollup.scores},
        "tau": tau_report,
        "novelty": novelty_report,
    }
    if test is not None and len(test):
        report["fit"]["test"] = _fit_quality(
            _rows(test, known_species(hierarchy, test.species)), temperature
        )
    thresholds = report["thresholds"]
    return Calibration(temperature, thresholds, power, novelty, _finite(report))


def _rows(outputs: ModelOutputs, rows: np.ndarray) -> ModelOutputs:
    return ModelOutputs(
        {r: v[rows] for r, v in outputs.logits.items()},
        {r: v[rows] for r, v in outputs.targets.items()},
        outputs.features[rows],
        outputs.species[rows],
    )


def _shots(
    val: ModelOutputs, test: ModelOutputs | None, rank: str, train_counts: Mapping[int, int]
) -> dict[str, Any]:
    result = {}
    for name, outputs in (("val", val), ("test", test)):
        if outputs is not None and len(outputs):
            pred = outputs.logits[rank].argmax(axis=1)
            result[name] = shot_accuracy(pred, outputs.targets[rank], train_counts)
    return result


def _novelty(
    hierarchy: LabelHierarchy, val_known: ModelOutputs, test: ModelOutputs | None
) -> tuple[NoveltyDetector | None, dict[str, Any]]:
    try:
        choice = choose_novelty_detector(val_known.features, val_known.species)
    except ValueError as error:
        return None, {"method": None, "why": str(error)}
    detector = choice.detector
    report = {
        "method": detector.method,
        "threshold": detector.threshold,
        "target_false_positive_rate": FALSE_POSITIVE_RATE,
        "auroc_held_out_val_species": choice.auroc,
        "stored_bytes": choice.stored_bytes,
    }
    if test is not None and len(test):
        known = known_species(hierarchy, test.species)
        scores = detector.score(test.features)
        report["test_known_flagged"] = (
            float(np.mean(detector.is_novel(scores[known]))) if known.any() else None
        )
        if known.any() and (~known).any():
            from sklearn.metrics import roc_auc_score

            report["test_auroc_unseen_species"] = float(roc_auc_score(~known, scores))
    return detector, report


def _finite(value: Any) -> Any:
    """JSON-ready: numpy scalars as Python numbers, NaN/inf as None, float keys as strings."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value
