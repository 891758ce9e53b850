"""Evaluate a detection folder: every number of ``metrics.json`` and the report, in one pass.

- mAP@0.5 and mAP@[.5:.95] over every box the detector returned (COCO's
  evaluation, :mod:`.coco_map`), overall and per class;
- precision and recall at the folder's score threshold: the boxes it keeps,
  matched to true boxes of their class at IoU 0.5 (:mod:`.box_matching`);
- counts per frame (kept boxes against true boxes; abundance is what a
  trap's results are read as): mean absolute error and mean signed error.

A frame that could not be read is counted in ``errors``, listed, and left out
of every number. No torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moths_framework.evaluate.box_matching import match_frame
from moths_framework.evaluate.coco_map import MAX_DETECTIONS, CocoAP, coco_average_precision
from moths_framework.evaluate.detection_folder import DetectionFolder
from moths_framework.evaluate.json_numbers import nan_as_null

__all__ = [
    "IOU_THRESHOLD",
    "DetectionClass",
    "DetectionEvaluation",
    "FrameCount",
    "evaluate_detection_folder",
]

IOU_THRESHOLD = 0.5  # for precision, recall and the PR curve


@dataclass(frozen=True)
class FrameCount:
    """One frame's moths: true boxes, boxes kept at the threshold, and how many of those hit.

    ``per_class_true`` and ``per_class_predicted`` count by label (index ``k - 1``).
    A frame that could not be read has ``error`` set and zero counts.
    """

    path: str
    width: int
    height: int
    true: int
    predicted: int
    hits: int
    error: str
    per_class_true: np.ndarray
    per_class_predicted: np.ndarray

    @property
    def difference(self) -> int:
        """Predicted minus true: positive when the detector over-counts."""
        return self.predicted - self.true


@dataclass(frozen=True)
class DetectionClass:
    """One class: AP, and at the threshold its boxes, hits, precision, recall and count error."""

    name: str
    ap: float
    ap50: float
    true_boxes: int
    kept_boxes: int
    hits: int
    count_mae: float

    @property
    def precision(self) -> float:
        return self.hits / self.kept_boxes if self.kept_boxes else math.nan

    @property
    def recall(self) -> float:
        return self.hits / self.true_boxes if self.true_boxes else math.nan


@dataclass(frozen=True)
class DetectionEvaluation:
    """Everything ``moths-evaluate`` reports about one detection folder."""

    folder: DetectionFolder
    coco: CocoAP
    classes: list[DetectionClass]
    counts: list[FrameCount]

    @property
    def frames(self) -> int:
        return len(self.counts)

    @property
    def errors(self) -> int:
        return sum(1 for c in self.counts if c.error)

    def _read(self) -> list[FrameCount]:
        return [c for c in self.counts if not c.error]

    @property
    def true_boxes(self) -> int:
        return sum(c.true for c in self._read())

    @property
    def kept_boxes(self) -> int:
        return sum(c.predicted for c in self._read())

    @property
    def hits(self) -> int:
        return sum(c.hits for c in self._read())

    @property
    def precision(self) -> float:
        return self.hits / self.kept_boxes if self.kept_boxes else math.nan

    @property
    def recall(self) -> float:
        return self.hits / self.true_boxes if self.true_boxes else math.nan

    @property
    def count_mae(self) -> float:
        """Mean over the frames read of |predicted - true|."""
        read = self._read()
        return float(np.mean([abs(c.difference) for c in read])) if read else math.nan

    @property
    def count_bias(self) -> float:
        """Mean over the frames read of predicted - true (negative: the detector under-counts)."""
        read = self._read()
        return float(np.mean([c.difference for c in read])) if read else math.nan

    def to_json(self) -> dict:
        """The content of ``metrics.json`` (NaN written as ``null``)."""
        folder = self.folder
        return nan_as_null({
            "task": "detection",
            "frames": self.frames,
            "unreadable": self.errors,
            "score_threshold": folder.score_threshold,
            "iou_threshold": IOU_THRESHOLD,
            "max_detections": MAX_DETECTIONS,
            "map": self.coco.map,
            "map50": self.coco.map50,
            "precision": self.precision,
            "recall": self.recall,
            "true_boxes": self.true_boxes,
            "kept_boxes": self.kept_boxes,
            "hits": self.hits,
            "count_mae": self.count_mae,
            "count_mean_error": self.count_bias,
            "per_class": {
                c.name: {
                    "ap": c.ap, "ap50": c.ap50, "precision": c.precision, "recall": c.recall,
                    "true_boxes": c.true_boxes, "kept_boxes": c.kept_boxes, "hits": c.hits,
                    "count_mae": c.count_mae,
                }
                for c in self.classes
            },
            "pr_curve_iou50": {
                "recall": self.coco.recall.tolist(), "precision": self.coco.precision50.tolist(),
            },
        })  # fmt: skip


def evaluate_detection_folder(folder: DetectionFolder) -> DetectionEvaluation:
    """Evaluate ``folder`` (see the module's docstring)."""
    errors = folder.errors
    read = [i for i, error in enumerate(errors) if not error]
    n_classes = len(folder.classes)
    coco = coco_average_precision(
        folder.classes, [folder.truth[i] for i in read], [folder.predicted[i] for i in read]
    )
    counts = []
    class_hits = np.zeros(n_classes, dtype=np.int64)
    for truth, predicted, error in zip(folder.truth, folder.predicted, errors, strict=True):
        if error:
            zero = np.zeros(n_classes, dtype=np.int64)
            counts.append(
                FrameCount(truth.path, truth.width, truth.height, 0, 0, 0, error, zero, zero)
            )
            continue
        kept = predicted.scores >= folder.score_threshold
        matches = match_frame(
            truth.boxes,
            truth.labels,
            predicted.boxes[kept],
            predicted.labels[kept],
            predicted.scores[kept],
            IOU_THRESHOLD,
        )
        class_hits += [matches.hits(k) for k in range(1, n_classes + 1)]
        counts.append(
            FrameCount(
                path=truth.path,
                width=truth.width,
                height=truth.height,
                true=len(truth.labels),
                predicted=int(kept.sum()),
                hits=matches.hits(),
                error="",
                per_class_true=_per_class(truth.labels, n_classes),
                per_class_predicted=_per_class(predicted.labels[kept], n_classes),
            )
        )
    return DetectionEvaluation(folder, coco, _classes(folder, coco, counts, class_hits), counts)


def _per_class(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64) - 1, minlength=n_classes)[:n_classes]


def _classes(
    folder: DetectionFolder, coco: CocoAP, counts: list[FrameCount], hits: np.ndarray
) -> list[DetectionClass]:
    read = [c for c in counts if not c.error]
    true = np.array([c.per_class_true for c in read]).reshape(len(read), len(folder.classes))
    kept = np.array([c.per_class_predicted for c in read]).reshape(true.shape)
    mae = np.abs(kept - true).mean(axis=0) if read else np.full(len(folder.classes), math.nan)
    return [
        DetectionClass(
            name=name,
            ap=float(coco.ap[k]),
            ap50=float(coco.ap50[k]),
            true_boxes=int(true[:, k].sum()),
            kept_boxes=int(kept[:, k].sum()),
            hits=int(hits[k]),
            count_mae=float(mae[k]),
        )
        for k, name in enumerate(folder.classes)
    ]
