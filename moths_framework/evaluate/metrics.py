"""Classification metrics of one rank, with scikit-learn.

scikit-learn rather than pycm (the seed's choice): it is maintained, its
metrics are vectorised over a sparse confusion matrix, and a 2,700-class head
costs milliseconds; pycm builds per-class Python dicts of dozens of statistics
each, which is slow and heavy at that size (docs/commands/evaluate.md has the
measurement).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from moths_framework.evaluate.folder_reader import RankOutputs

__all__ = ["ClassMetrics", "RankMetrics", "confused_pairs", "rank_metrics"]


@dataclass(frozen=True)
class ClassMetrics:
    """One class at one rank. ``confused_with`` is the commonest wrong prediction."""

    name: str
    support: int
    predicted: int
    precision: float
    recall: float
    f1: float
    confused_with: str | None
    confused_count: int

    def to_dict(self) -> dict:
        return {
            "support": self.support,
            "predicted": self.predicted,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "most_common_wrong_prediction": self.confused_with,
            "most_common_wrong_count": self.confused_count,
        }


@dataclass(frozen=True)
class RankMetrics:
    """Metrics of one rank.

    Macro averages run over the classes that occur among the true labels or
    the predictions (as torchmetrics and scikit-learn do by default); a class
    the evaluated images never touch does not count.

    Attributes:
        confusion: [C, C] counts, rows true class, columns prediction, in the
            hierarchy's class order.
        classes: per-class metrics of the classes that occur, hierarchy order.
    """

    rank: str
    class_names: list[str]
    support: int
    accuracy: float
    top5_accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    balanced_accuracy: float
    confusion: np.ndarray
    classes: list[ClassMetrics]

    def summary(self) -> dict[str, float | int]:
        """The headline numbers, as in ``metrics.json``."""
        return {
            "support": self.support,
            "accuracy": self.accuracy,
            "top5_accuracy": self.top5_accuracy,
            "precision_macro": self.precision_macro,
            "recall_macro": self.recall_macro,
            "f1_macro": self.f1_macro,
            "balanced_accuracy": self.balanced_accuracy,
        }


def rank_metrics(rank: str, class_names: list[str], outputs: RankOutputs) -> RankMetrics:
    """Every metric of one rank from its targets and predictions.

    With no rows at all the averages are NaN and the class list is empty.
    """
    y, p = outputs.targets, outputs.pred
    n_classes = len(class_names)
    confusion = confusion_matrix(y, p, labels=np.arange(n_classes)) if len(y) else None
    if confusion is None:
        confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    occurring = np.flatnonzero(confusion.sum(axis=0) + confusion.sum(axis=1))
    if len(y) == 0:
        nan = float("nan")
        return RankMetrics(rank, class_names, 0, nan, nan, nan, nan, nan, nan, confusion, [])
    precision, recall, f1, support = precision_recall_fscore_support(
        y, p, labels=occurring, zero_division=0
    )
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(y, p)
    classes = _class_metrics(class_names, confusion, occurring, precision, recall, f1, support)
    return RankMetrics(
        rank=rank,
        class_names=class_names,
        support=len(y),
        accuracy=float(np.mean(y == p)),
        top5_accuracy=float(np.mean(outputs.top5)),
        precision_macro=float(np.mean(precision)),
        recall_macro=float(np.mean(recall)),
        f1_macro=float(np.mean(f1)),
        balanced_accuracy=float(balanced),
        confusion=confusion,
        classes=classes,
    )


def _class_metrics(
    names: list[str],
    confusion: np.ndarray,
    occurring: np.ndarray,
    precision: np.ndarray,
    recall: np.ndarray,
    f1: np.ndarray,
    support: np.ndarray,
) -> list[ClassMetrics]:
    rows = confusion[occurring].copy()
    rows[np.arange(len(occurring)), occurring] = 0  # off the diagonal: the wrong answers
    worst = rows.argmax(axis=1)
    worst_count = rows[np.arange(len(occurring)), worst]
    predicted = confusion.sum(axis=0)[occurring]
    return [
        ClassMetrics(
            name=names[c],
            support=int(support[i]),
            predicted=int(predicted[i]),
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
            confused_with=names[worst[i]] if worst_count[i] else None,
            confused_count=int(worst_count[i]),
        )
        for i, c in enumerate(occurring)
    ]


def confused_pairs(
    confusion: np.ndarray, class_names: list[str], limit: int = 20
) -> list[tuple[str, str, int]]:
    """The ``limit`` largest off-diagonal counts: (true class, predicted class, images)."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    count = min(limit, int(np.count_nonzero(flat)))
    if count == 0:
        return []
    top = np.argpartition(-flat, count - 1)[:count]
    top = top[np.lexsort((top, -flat[top]))]  # largest first, then class order
    rows, cols = np.unravel_index(top, off.shape)
    return [
        (class_names[r], class_names[c], int(off[r, c])) for r, c in zip(rows, cols, strict=True)
    ]
