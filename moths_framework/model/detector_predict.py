"""A detector's predictions gathered per frame, in each frame's own pixels.

``trainer.predict`` on :class:`~moths_framework.model.detector_lightning.MothsDetector`
gives, per batch, the decoded frames' ``image_id`` s, the size each had as the model
got it and its boxes. :func:`frame_predictions` pairs them with the frames of the
data module: boxes scaled back to the frame as read from disk (EXIF orientation
applied; ``max_side`` may have shrunk it), the true boxes beside them, and a frame
that did not decode kept, with its error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from moths_framework.data.coco import Frame
from moths_framework.evaluate.detection_folder import FrameBoxes
from moths_framework.images import ImageDecodeError, decode_rgb

__all__ = ["frame_predictions"]


def frame_predictions(
    batches: Sequence[dict[str, Any]],
    frames: Sequence[Frame],
    labels: Sequence[Sequence[int]],
) -> tuple[list[FrameBoxes], list[FrameBoxes]]:
    """The true and the predicted boxes of ``frames``, in their order.

    Args:
        batches: what ``predict_step`` returned for these frames.
        frames: the frames predicted (a split of the data module's).
        labels: each frame's true label per box, in the order of its boxes.
    """
    found: dict[int, tuple[tuple[int, int], dict[str, Any]]] = {}
    for batch in batches:
        for image_id, size, detections in zip(
            batch["image_ids"], batch["sizes"], batch["detections"], strict=True
        ):
            found[image_id] = (size, detections)
    truth, predicted = [], []
    for frame, frame_labels in zip(frames, labels, strict=True):
        truth.append(
            FrameBoxes(
                str(frame.path), frame.width, frame.height,
                np.asarray(frame.boxes, np.float32).reshape(-1, 4),
                np.asarray(frame_labels, np.int64),
            )
        )  # fmt: skip
        if frame.image_id in found:
            predicted.append(_in_frame_pixels(frame, *found[frame.image_id]))
        else:
            predicted.append(_unread(frame))
    return truth, predicted


def _in_frame_pixels(frame: Frame, size: tuple[int, int], detections: dict[str, Any]) -> FrameBoxes:
    """The detections of ``frame`` as the model saw it at ``size`` (H, W), scaled to its pixels."""
    height, width = size
    scale = np.array([frame.width / width, frame.height / height] * 2, np.float32)
    boxes = detections["boxes"].numpy().astype(np.float32).reshape(-1, 4) * scale
    boxes = np.clip(boxes, 0, [frame.width, frame.height, frame.width, frame.height])
    scores = detections["scores"].numpy().astype(np.float32)
    order = np.argsort(-scores, kind="stable")  # highest first, as the folder promises
    return FrameBoxes(
        str(frame.path), frame.width, frame.height, boxes[order].astype(np.float32),
        detections["labels"].numpy().astype(np.int64)[order], scores[order],
    )  # fmt: skip


def _unread(frame: Frame) -> FrameBoxes:
    """A frame the data module skipped: no boxes, and why it could not be read."""
    try:
        decode_rgb(frame.path)
        error = "could not be read"  # it decodes now: it changed during the run
    except (ImageDecodeError, OSError) as err:
        error = str(err)
    empty = np.zeros((0, 4), np.float32)
    return FrameBoxes(
        str(frame.path), frame.width, frame.height, empty,
        np.zeros(0, np.int64), np.zeros(0, np.float32), error=error,
    )  # fmt: skip
