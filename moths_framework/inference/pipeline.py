"""``Pipeline``: trap frames through a detector, then each box's crop through a classifier.

Each frame is decoded once, EXIF orientation applied (with the detector's
``fast_decode``, a JPEG decoded at reduced scale for the detector is decoded a
second time, in full, for the crops), in a thread one frame ahead of the models:
at most two frames are held in memory at full resolution, however many frames a
night has. The detector
finds the boxes; each box, widened by a margin and clamped to the frame, is cut
from the full-resolution frame; :class:`OnnxClassifier` classifies the crops in
batches, with its own preprocessing and roll-up. A frame that cannot be decoded
is a result with ``error`` set, never the end of the run. No torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from PIL import Image

from moths_framework.inference.classifier import OnnxClassifier
from moths_framework.inference.decode_ahead import ImageInput, prepared_ahead, source_name
from moths_framework.inference.detector import Detection, LoadedFrame, OnnxDetector
from moths_framework.inference.prediction import Prediction

__all__ = ["FrameDetection", "FrameResult", "Pipeline", "crop_box"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FrameDetection:
    """One box of a frame, its crop and what the classifier said of it.

    Attributes:
        detection: the detector's box (frame pixels), score and class.
        crop_box: the pixels cut, ``(left, top, right, bottom)``: the box widened
            by the margin, rounded outwards, clamped to the frame.
        prediction: the classifier's answer for the crop (``None`` without one).
        crop: the crop (RGB, full resolution) when the pipeline keeps crops.
    """

    detection: Detection
    crop_box: Box
    prediction: Prediction | None = None
    crop: Image.Image | None = None


@dataclass(frozen=True)
class FrameResult:
    """One frame: its size (EXIF orientation applied) and its detections, best first;
    or why it could not be read (``error``; size ``None``)."""

    source: str
    size: tuple[int, int] | None
    detections: list[FrameDetection] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the frame was decoded and searched (it may hold no detection)."""
        return self.error is None


def crop_box(box: tuple[float, float, float, float], margin: int, width: int, height: int) -> Box:
    """The pixels to cut for ``box``: widened by ``margin`` on every side, rounded outwards,
    clamped to the ``width`` x ``height`` frame, and at least one pixel each way."""
    x1, y1, x2, y2 = box
    left = min(max(0, math.floor(x1 - margin)), width - 1)
    top = min(max(0, math.floor(y1 - margin)), height - 1)
    right = max(min(width, math.ceil(x2 + margin)), left + 1)
    bottom = max(min(height, math.ceil(y2 + margin)), top + 1)
    return left, top, right, bottom


class Pipeline:
    """A detector and, optionally, a classifier for its crops.

    Args:
        detector: finds the boxes (its ``min_score`` and ``max_detections`` apply).
        classifier: classifies each box's crop; ``None``: boxes only (counting).
        crop_margin: pixels added on every side of a box before cutting its crop
            (clamped to the frame); the classifier sees the widened crop.
        top_k: classes kept per rank in each prediction.
        batch_size: crops per classifier call.
        keep_crops: put each crop in its :class:`FrameDetection` (to save them).

    Raises:
        ValueError: a negative ``crop_margin``, ``top_k`` or ``batch_size`` below 1.
    """

    def __init__(
        self,
        detector: OnnxDetector,
        classifier: OnnxClassifier | None = None,
        *,
        crop_margin: int = 0,
        top_k: int = 5,
        batch_size: int = 32,
        keep_crops: bool = False,
    ) -> None:
        if crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0 pixels, got {crop_margin}")
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}")
        self.detector = detector
        self.classifier = classifier
        self.crop_margin = crop_margin
        self.top_k = top_k
        self.batch_size = batch_size
        self.keep_crops = keep_crops

    @property
    def cuts_crops(self) -> bool:
        """Whether crops are cut: for the classifier, or to keep them."""
        return self.classifier is not None or self.keep_crops

    def run(self, frames: ImageInput | Iterable[ImageInput]) -> Iterator[FrameResult]:
        """One :class:`FrameResult` per frame (paths or PIL images), in input order, as
        each is done. A frame that cannot be decoded gives a result with ``error``."""
        if isinstance(frames, (str, os.PathLike, Image.Image)):
            frames = [frames]
        return self._results(frames)

    def _results(self, frames: Iterable[ImageInput]) -> Iterator[FrameResult]:
        # One thread decodes the next frame while the models work on this one.
        loaded = prepared_ahead(frames, self._load, workers=1, window=1)
        with closing(loaded):
            for source, frame, error in loaded:
                if frame is None:
                    yield FrameResult(source, None, error=error)
                else:
                    yield self._frame(source, frame)

    def _load(self, index: int, image: ImageInput) -> tuple[str, LoadedFrame | None, str | None]:
        source = source_name(image, index)
        try:
            return source, self.detector.load(image, keep_image=self.cuts_crops), None
        except Exception as error:  # one bad frame must not end a night's run
            return source, None, str(error) or type(error).__name__

    def _frame(self, source: str, frame: LoadedFrame) -> FrameResult:
        width, height = frame.size
        detections = self.detector.detect_input(frame.input, frame.size)
        boxes = [crop_box(d.box, self.crop_margin, width, height) for d in detections]
        crops = [_cut(frame.image, box) for box in boxes] if self.cuts_crops else []
        predictions = self._classify(source, crops) if self.classifier else [None] * len(boxes)
        kept = crops if self.keep_crops else [None] * len(boxes)
        parts = zip(detections, boxes, predictions, kept, strict=True)
        return FrameResult(source, frame.size, [FrameDetection(*p) for p in parts])

    def _classify(self, source: str, crops: list[Image.Image]) -> list[Prediction]:
        predictions = self.classifier.predict(crops, self.top_k, self.batch_size) if crops else []
        return [
            dataclasses.replace(p, source=f"{source}#{number}")
            for number, p in enumerate(predictions, start=1)
        ]


def _cut(image: Image.Image, box: Box) -> Image.Image:
    crop = image.crop(box)
    crop.info.pop("exif", None)  # the frame's EXIF (orientation applied) does not describe a crop
    return crop
