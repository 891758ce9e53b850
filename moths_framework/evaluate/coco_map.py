"""COCO mean average precision of a detection folder, with ``faster_coco_eval``'s COCOeval.

The same evaluation torchmetrics' ``MeanAveragePrecision`` runs (its
``faster_coco_eval`` backend): 101-point interpolated precision, IoU 0.50 to
0.95 in steps of 0.05, every box size. Up to :data:`MAX_DETECTIONS` boxes per
frame count (COCO's default of 100 would cut a frame of 300 moths short). No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from moths_framework.evaluate.detection_folder import FrameBoxes

__all__ = ["MAX_DETECTIONS", "CocoAP", "coco_average_precision"]

MAX_DETECTIONS = 500  # per frame, as AMI's production detector returns at most


@dataclass(frozen=True)
class CocoAP:
    """Average precision, overall and per class (NaN where a class has no true box).

    Attributes:
        map: mAP@[.5:.95], the mean over classes and the ten IoU thresholds.
        map50: mAP@0.5.
        ap: per class, AP@[.5:.95].
        ap50: per class, AP@0.5.
        recall: the 101 recall points of the precision-recall curve.
        precision50: precision at IoU 0.5 for each recall point, the mean over
            classes with true boxes (0 where no score threshold reaches that recall).
    """

    map: float
    map50: float
    ap: np.ndarray
    ap50: np.ndarray
    recall: np.ndarray
    precision50: np.ndarray


def coco_average_precision(
    classes: Sequence[str], truth: Sequence[FrameBoxes], predicted: Sequence[FrameBoxes]
) -> CocoAP:
    """COCO AP of ``predicted`` against ``truth`` (frames in the same order; all of them count)."""
    images = [
        {"id": i, "file_name": str(f.path), "width": int(f.width), "height": int(f.height)}
        for i, f in enumerate(truth, start=1)
    ]
    annotations = []
    for image_id, frame in enumerate(truth, start=1):
        for box, label in zip(_xywh(frame.boxes), frame.labels, strict=True):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": k, "name": name} for k, name in enumerate(classes, start=1)]
    ground_truth = COCO({"images": images, "annotations": annotations, "categories": categories})
    results = [
        {"image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score)}
        for image_id, frame in enumerate(predicted, start=1)
        for box, label, score in zip(_xywh(frame.boxes), frame.labels, frame.scores, strict=True)
    ]
    evaluation = COCOeval_faster(ground_truth, ground_truth.loadRes(results), "bbox")
    evaluation.params.imgIds = [image["id"] for image in images]
    evaluation.params.maxDets = [1, 10, MAX_DETECTIONS]
    evaluation.evaluate()
    evaluation.accumulate()
    # precision [IoU, recall point, class, area range, max detections]: all areas, most boxes
    precision = np.asarray(evaluation.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]
    return CocoAP(
        map=_mean(precision),
        map50=_mean(precision[0]),
        ap=np.array([_mean(precision[:, :, k]) for k in range(len(classes))]),
        ap50=np.array([_mean(precision[0, :, k]) for k in range(len(classes))]),
        recall=np.asarray(evaluation.params.recThrs, dtype=np.float64),
        precision50=_curve(precision[0]),
    )


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in boxes.tolist()]


def _mean(precision: np.ndarray) -> float:
    """COCO's summary: the mean over entries that are not -1 (classes without true boxes)."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _curve(precision50: np.ndarray) -> np.ndarray:
    """[recall point, class] -> per recall point, the mean over classes with true boxes."""
    present = (precision50 > -1).all(axis=0)
    if not present.any():
        return np.full(len(precision50), np.nan)
    return precision50[:, present].mean(axis=1)
