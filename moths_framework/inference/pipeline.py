"""``Pipeline``: trap frames through a detector, then each box's crop through a classifier.

Each frame is decoded once, EXIF orientation applied (with the detector's
``fast_decode``, a JPEG decoded at reduced scale for the detector is decoded a
second time, in full, for the crops), in a thread one frame ahead of the models:
at most two frames are held in memory at full resolution, however many frames a
night has. The detector
finds the boxes; each box, widened by a margin and clamped to the frame, is cut
from the full-resolution frame; :class:`OnnxClassifier` classifies the crops in
batches, with its own preprocessing and roll-up. The classifier's input is made
straight from the frame (:meth:`OnnxClassifier.predict_crops`): only the pixels
its centre crop keeps are resized, so a sliver box costs what a square one does.
A frame that cannot be decoded is a result with ``error`` set, never the end of the
run. No torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from moths_framework.images import decode_rgb
from moths_framework.inference.classifier import OnnxClassifier
from moths_framework.inference.decode_ahead import ImageInput, prepared_ahead, source_name
from moths_framework.inference.detector import Detection, LoadedFrame, OnnxDetector
from moths_framework.inference.prediction import Prediction
from moths_framework.inference.providers import workers_beside

__all__ = [
    "FrameDetection",
    "FrameResult",
    "MothFilter",
    "Pipeline",
    "WholeFrame",
    "crop_box",
    "default_frame_workers",
]

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
        filter_class: what the moth filter called the crop (``None`` without a filter);
            a crop it does not call its positive class has no ``prediction``.
        filter_score: the filter's probability of its positive class.
    """

    detection: Detection
    crop_box: Box
    prediction: Prediction | None = None
    crop: Image.Image | None = None
    filter_class: str | None = None
    filter_score: float | None = None


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


def default_frame_workers(provider: str, cores: int | None = None) -> int:
    """Frames read at once ahead of a detector on ``provider``: 1 on the CPU provider
    (the models need the cores), 4 on a GPU provider; at most ``cores`` (this machine's)."""
    return workers_beside(provider, 1, 4, cores)


@dataclass(frozen=True)
class MothFilter:
    """A moth/non-moth classifier before the species classifier: a crop goes on when
    ``positive`` (a class of the model's first rank) has at least ``threshold``."""

    model: OnnxClassifier
    positive: str = "moth"
    threshold: float = 0.5

    def judge(
        self, image: Image.Image, boxes: list[Box], batch_size: int
    ) -> list[tuple[str, float]]:
        """Each box's crop of ``image``: (class, probability of ``positive``), ``positive``
        when it passes, else the likeliest other class."""
        rank = self.model.hierarchy.ranks[0]
        classes = self.model.hierarchy.classes(rank)
        positive = classes.index(self.positive)
        out = []
        for start in range(0, len(boxes), batch_size):
            cut = boxes[start : start + batch_size]
            batch = np.stack([self.model.crop_input(image, box) for box in cut])
            for row in self.model.probabilities(batch)[rank]:
                others = row.copy()
                others[positive] = -1.0
                moth = row[positive] >= self.threshold
                name = classes[positive] if moth else classes[int(np.argmax(others))]
                out.append((name, float(row[positive])))
        return out


class WholeFrame:
    """A stand-in for a detector: the whole frame is the one box (score 1, ``whole image``)."""

    provider = "no detector"

    def load(self, image: object, keep_image: bool = False) -> LoadedFrame:
        decoded = decode_rgb(image)
        return LoadedFrame(decoded.full_size, np.zeros((1, 3, 1, 1), np.float32), decoded.image)

    def detect_input(self, x: np.ndarray, frame_size: tuple[int, int]) -> list[Detection]:
        width, height = frame_size
        return [Detection((0.0, 0.0, float(width), float(height)), 1.0, "whole image")]


class Pipeline:
    """A detector and, optionally, a moth filter and a classifier for its crops.

    Args:
        detector: finds the boxes (its ``min_score`` and ``max_detections`` apply);
            :class:`WholeFrame` for none.
        classifier: classifies each box's crop; ``None``: boxes only (counting).
        moth_filter: classifies each crop first; the classifier sees only those it
            lets on.
        crop_margin: pixels added on every side of a box before cutting its crop
            (clamped to the frame); the classifier sees the widened crop.
        top_k: classes kept per rank in each prediction.
        batch_size: crops per classifier call.
        keep_crops: put each crop in its :class:`FrameDetection` (to save them).
        frame_workers: frames read (decoded and made the detector's input) at once,
            ahead of the models; each holds a decoded frame (an 8000x6000 frame is
            144 MB). One keeps the models busy on a CPU; a GPU, faster than one
            thread decodes, wants more (see :func:`default_frame_workers`).

    Raises:
        ValueError: a negative ``crop_margin``; ``top_k``, ``batch_size`` or
            ``frame_workers`` below 1.
    """

    def __init__(
        self,
        detector: OnnxDetector | WholeFrame,
        classifier: OnnxClassifier | None = None,
        *,
        moth_filter: MothFilter | None = None,
        crop_margin: int = 0,
        top_k: int = 5,
        batch_size: int = 32,
        keep_crops: bool = False,
        frame_workers: int = 1,
    ) -> None:
        if crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0 pixels, got {crop_margin}")
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}")
        if frame_workers < 1:
            raise ValueError(f"frame_workers must be >= 1, got {frame_workers}")
        self.detector = detector
        self.classifier = classifier
        self.moth_filter = moth_filter
        self.crop_margin = crop_margin
        self.top_k = top_k
        self.batch_size = batch_size
        self.keep_crops = keep_crops
        self.frame_workers = frame_workers

    @property
    def cuts_crops(self) -> bool:
        """Whether crops are cut: for the classifier, or to keep them."""
        return self.classifier is not None or self.moth_filter is not None or self.keep_crops

    def run(self, frames: ImageInput | Iterable[ImageInput]) -> Iterator[FrameResult]:
        """One :class:`FrameResult` per frame (paths or PIL images), in input order, as
        each is done. A frame that cannot be decoded gives a result with ``error``."""
        if isinstance(frames, (str, os.PathLike, Image.Image)):
            frames = [frames]
        return self._results(frames)

    def _results(self, frames: Iterable[ImageInput]) -> Iterator[FrameResult]:
        # frame_workers threads read the next frames while the models work on this one.
        workers = self.frame_workers
        loaded = prepared_ahead(frames, self._load, workers=workers, window=workers)
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
        judged = [(None, None)] * len(boxes)
        if self.moth_filter is not None and boxes:
            judged = self.moth_filter.judge(frame.image, boxes, self.batch_size)
        passed = [i for i, (name, _) in enumerate(judged) if name in (None, self._positive)]
        predictions: list[Prediction | None] = [None] * len(boxes)
        if self.classifier is not None and passed:
            found = self.classifier.predict_crops(
                frame.image, [boxes[i] for i in passed], self.top_k, self.batch_size
            )
            for i, p in zip(passed, found, strict=True):
                predictions[i] = dataclasses.replace(p, source=f"{source}#{i + 1}")
        kept = [_cut(frame.image, b) for b in boxes] if self.keep_crops else [None] * len(boxes)
        parts = zip(detections, boxes, predictions, kept, judged, strict=True)
        return FrameResult(
            source, frame.size, [FrameDetection(d, b, p, c, *j) for d, b, p, c, j in parts]
        )

    @property
    def _positive(self) -> str | None:
        return self.moth_filter.positive if self.moth_filter is not None else None


def _cut(image: Image.Image, box: Box) -> Image.Image:
    crop = image.crop(box)
    crop.info.pop("exif", None)  # the frame's EXIF (orientation applied) does not describe a crop
    return crop
