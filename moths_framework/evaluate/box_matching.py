"""Predicted boxes matched to true ones at one IoU, greedily by score, as COCO matches them.

Precision, recall and the per-class hit counts of ``moths-evaluate`` at the
detector's chosen score threshold come from :func:`match_frame`. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FrameMatches", "box_iou", "match_frame"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` [N, 4] with every box of ``b`` [M, 4]
    (``x1 y1 x2 y2``; areas ``w * h`` as COCO computes them) as float64 [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class FrameMatches:
    """One frame's boxes after matching.

    Attributes:
        true_labels: label of each true box.
        predicted_labels: label of each predicted box considered (kept ones).
        matched: per predicted box, the index of the true box it hit, or -1.
    """

    true_labels: np.ndarray
    predicted_labels: np.ndarray
    matched: np.ndarray

    def hits(self, label: int | None = None) -> int:
        """Predicted boxes that hit a true box (of ``label``, or of any label)."""
        hit = self.matched >= 0
        return int(hit.sum() if label is None else (hit & (self.predicted_labels == label)).sum())


def match_frame(
    true_boxes: np.ndarray,
    true_labels: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float = 0.5,
) -> FrameMatches:
    """Match predicted boxes to true ones of the same label, highest score first.

    Each predicted box takes the free true box of its label with the highest IoU,
    if that IoU reaches ``iou_threshold``; a true box is hit at most once.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    iou = box_iou(boxes, true_boxes)
    iou[labels[:, None] != true_labels[None, :]] = -1.0  # only boxes of the same class match
    matched = np.full(len(labels), -1, dtype=np.int64)
    free = np.ones(len(true_labels), dtype=bool)
    for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        candidates = np.where(free, iou[i], -1.0)
        if len(candidates) and candidates.max() >= iou_threshold:
            best = int(candidates.argmax())
            matched[i], free[best] = best, False
    return FrameMatches(true_labels, labels, matched)
