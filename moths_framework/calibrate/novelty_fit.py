"""Fitting the novel-species detector on validation features, and choosing it by measurement.

Two detectors (scored at inference by :mod:`moths_framework.inference.novelty_score`):
Mahalanobis distance to the nearest species mean under one shared, shrunk
(Ledoit-Wolf) covariance, and the cosine distance to the nearest validation
image. Each cluster is a *data* species, so the species bundled into ``Other``
keep a mean of their own.

Which detector: both are measured on the validation images by holding out
groups of species in turn (fit on the rest, score the held-out species as
"novel" against unseen images of the others) and the one with the higher mean
AUROC wins. The threshold is the 95th percentile of scores of known-species
images the fitted statistics did not include (two folds of images), so about
5% of known-species images are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from moths_framework.inference.novelty_score import NOVELTY_METHODS, NoveltyDetector

__all__ = ["NoveltyChoice", "choose_novelty_detector", "fit_detector"]

FALSE_POSITIVE_RATE = 0.05
SPECIES_FOLDS = 5
KNN_PER_SPECIES = 20  # stored features per species: bounds the knn detector's size


@dataclass(frozen=True)
class NoveltyChoice:
    """The chosen detector, the measured AUROC of each method, and its storage size."""

    detector: NoveltyDetector
    auroc: dict[str, float]
    stored_bytes: int


def _labels(species: np.ndarray) -> np.ndarray:
    return np.unique(species, return_inverse=True)[1]


def fit_detector(method: str, features: np.ndarray, labels: np.ndarray) -> NoveltyDetector:
    """A ``method`` detector fitted on ``features`` [N, D] grouped by ``labels``; its
    threshold is left at infinity."""
    features = features.astype(np.float64)
    if method == "knn":
        keep = np.concatenate(
            [np.flatnonzero(labels == k)[:KNN_PER_SPECIES] for k in np.unique(labels)]
        )
        bank = features[np.sort(keep)]
        bank /= np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
        return NoveltyDetector("knn", float("inf"), {"bank": bank.astype(np.float32)})
    classes = np.unique(labels)
    means = np.stack([features[labels == k].mean(axis=0) for k in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    values, vectors = np.linalg.eigh(covariance)
    whitening = vectors / np.sqrt(np.maximum(values, values.max() * 1e-9))[None, :]
    center = features.mean(axis=0)
    arrays = {"center": center, "whitening": whitening, "means": (means - center) @ whitening}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    return NoveltyDetector("mahalanobis", float("inf"), arrays)


def _image_folds(labels: np.ndarray) -> np.ndarray:
    """0/1 per row, alternating within each label, so both folds hold most labels."""
    fold = np.zeros(len(labels), dtype=np.int64)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        fold[rows] = np.arange(len(rows)) % 2
    return fold


def _held_out_auroc(method: str, features: np.ndarray, labels: np.ndarray) -> float:
    """Mean AUROC of flagging held-out species against unseen images of the others."""
    classes = np.unique(labels)
    if len(classes) < 2:
        return float("nan")
    group = np.random.default_rng(0).permutation(len(classes)) % min(SPECIES_FOLDS, len(classes))
    fold = _image_folds(labels)
    aurocs = []
    for g in range(group.max() + 1):
        novel = np.isin(labels, classes[group == g])
        fit_rows, known_rows = ~novel & (fold == 0), ~novel & (fold == 1)
        if fit_rows.sum() < 2 or not known_rows.any():
            continue
        detector = fit_detector(method, features[fit_rows], labels[fit_rows]).rounded()
        scores = detector.score(np.concatenate([features[known_rows], features[novel]]))
        truth = np.r_[np.zeros(known_rows.sum()), np.ones(novel.sum())]
        aurocs.append(roc_auc_score(truth, scores))
    return float(np.mean(aurocs)) if aurocs else float("nan")


def _threshold(method: str, features: np.ndarray, labels: np.ndarray) -> float:
    """The (1 - FPR) quantile of known-species scores from statistics that did not see them."""
    fold = _image_folds(labels)
    counts = np.bincount(labels)
    scored = counts[labels] >= 2  # an image alone in its species would look novel
    scores = []
    for f in (0, 1):
        fit, test = fold != f, (fold == f) & scored
        if fit.sum() >= 2 and test.any():
            detector = fit_detector(method, features[fit], labels[fit]).rounded()
            scores.append(detector.score(features[test]))
    if not scores:  # too few images to hold any out: in-sample
        scores = [fit_detector(method, features, labels).rounded().score(features)]
    return float(np.quantile(np.concatenate(scores), 1.0 - FALSE_POSITIVE_RATE))


def choose_novelty_detector(features: np.ndarray, species: np.ndarray) -> NoveltyChoice:
    """Measure both methods on validation ``features`` of known ``species`` (data names),
    keep the better, fit it on all of them and set its threshold.

    Raises:
        ValueError: fewer than 2 images.
    """
    if len(features) < 2:
        raise ValueError("novelty: at least 2 validation images of known species are needed")
    labels = _labels(species)
    auroc = {m: _held_out_auroc(m, features, labels) for m in NOVELTY_METHODS}
    measured = {m: a for m, a in auroc.items() if np.isfinite(a)}
    method = max(measured, key=measured.get) if measured else NOVELTY_METHODS[0]
    fitted = fit_detector(method, features, labels)
    detector = NoveltyDetector(method, _threshold(method, features, labels), fitted.arrays)
    stored = detector.rounded()
    size = sum(
        len(a["float16" if "float16" in a else "float32"])
        for a in stored.to_json()["arrays"].values()
    )
    return NoveltyChoice(stored, auroc, size)
