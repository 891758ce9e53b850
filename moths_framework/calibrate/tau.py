"""Tau-normalisation of the species head: ``W_i / ||W_i||^P`` per class row.

A head trained on long-tailed data grows larger weight norms for common
species; dividing each row by a power of its norm evens that out (Kang et al.,
"Decoupling representation and classifier", ICLR 2020). ``P = 0`` leaves the
head bit-identical; ``auto`` picks ``P`` on validation images by macro-F1.
The chosen ``P`` is baked into the head's weights, so an exported model stays
a plain linear layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

__all__ = [
    "SHOT_GROUPS",
    "TAU_GRID",
    "TauChoice",
    "choose_tau",
    "shot_accuracy",
    "tau_logits",
    "tau_normalise",
]

TAU_GRID: tuple[float, ...] = tuple(round(p, 2) for p in np.arange(0.0, 2.01, 0.1))
# (name, lowest training count, highest training count): the seed's split, by training counts
SHOT_GROUPS = (("few", 0, 19), ("medium", 20, 100), ("many", 101, None))


def tau_normalise(weight: np.ndarray, power: float) -> np.ndarray:
    """``weight`` [C, D] with each row divided by its L2 norm to ``power``.

    ``power == 0`` returns the weights unchanged (the same array values, bit for bit).
    """
    if power == 0:
        return weight
    norms = np.linalg.norm(weight.astype(np.float64), axis=1, keepdims=True)
    return (weight / np.maximum(norms, 1e-12) ** power).astype(weight.dtype)


def tau_logits(
    features: np.ndarray, weight: np.ndarray, bias: np.ndarray, power: float
) -> np.ndarray:
    """Species logits of ``features`` under the tau-normalised head."""
    return features.astype(np.float64) @ tau_normalise(weight, power).T.astype(np.float64) + bias


@dataclass(frozen=True)
class TauChoice:
    """``power``: the P chosen; ``f1``: P -> validation macro-F1 over the grid."""

    power: float
    f1: dict[float, float]


def choose_tau(
    features: np.ndarray,
    targets: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    grid: Sequence[float] = TAU_GRID,
) -> TauChoice:
    """The P of ``grid`` with the best macro-F1 on (``features``, ``targets``); ties: smaller P."""
    scores = {}
    for power in grid:
        pred = tau_logits(features, weight, bias, power).argmax(axis=1)
        scores[float(power)] = float(f1_score(targets, pred, average="macro", zero_division=0))
    best = max(scores, key=lambda p: (scores[p], -p))
    return TauChoice(best, scores)


def shot_accuracy(
    pred: np.ndarray, targets: np.ndarray, train_counts: Mapping[int, int]
) -> dict[str, dict[str, float | int]]:
    """Accuracy of the images whose true class had few (< 20), medium (20-100) or many
    (> 100) TRAINING images: group -> {"classes", "images", "accuracy"}."""
    counts = np.array([train_counts.get(int(t), 0) for t in targets])
    result = {}
    for name, low, high in SHOT_GROUPS:
        rows = (counts >= low) & (counts <= (high if high is not None else np.inf))
        accuracy = float(np.mean(pred[rows] == targets[rows])) if rows.any() else float("nan")
        classes = len(set(targets[rows].tolist()))
        result[name] = {"classes": classes, "images": int(rows.sum()), "accuracy": accuracy}
    return result
