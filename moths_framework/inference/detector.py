"""``OnnxDetector``: an exported detector on ONNX Runtime, from a trap frame to its boxes.

The file follows :mod:`moths_framework.inference.detector_metadata`: a frame in,
boxes, scores and labels out, no score cut inside. The graph resizes the frame
to the working size its preprocessing states (shorter side ``min_side``, longer
at most ``max_side``) before the model sees it. The reader does that resize
first, the way the graph does it (bilinear at pixel centres, no antialiasing:
Pillow's affine transform, within 1.5 grey levels of the graph's own, 0.5 on
average: it rounds down), so the graph keeps the size, its boxes are those PyTorch gives on the
whole frame, and a huge frame never becomes a full-size float array (an
8000x6000 frame would be 576 MB). ``fast_decode`` decodes a JPEG at the smallest
of 1/2, 1/4 or 1/8 scale that still covers the working size instead: faster,
not equal. Boxes come back in the frame's pixels, EXIF orientation applied. No torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from moths_framework import zoo
from moths_framework.images import decode_rgb, open_rgb
from moths_framework.inference.decode_ahead import ImageInput
from moths_framework.inference.detector_metadata import (
    BOXES_OUTPUT,
    DETECTOR_INPUT,
    LABELS_OUTPUT,
    SCORES_OUTPUT,
    DetectorMetadata,
)
from moths_framework.inference.metadata import ModelFormatError
from moths_framework.inference.model_file import open_model_file
from moths_framework.inference.providers import TENSORRT, EngineSettings, resolve_providers

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["Detection", "LoadedFrame", "OnnxDetector", "resized_as_the_graph"]

_OUTPUTS = [BOXES_OUTPUT, SCORES_OUTPUT, LABELS_OUTPUT]
_SMALLEST_SIDE = 16  # of a frame's working size, in TensorRT's shape profile


@dataclass(frozen=True)
class Detection:
    """One box found on a frame.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in the frame's pixels (EXIF orientation applied),
            within ``[0, width] x [0, height]``.
        score: the detector's score in [0, 1].
        label: the detector's class name (``moth``, ...).
    """

    box: tuple[float, float, float, float]
    score: float
    label: str


@dataclass(frozen=True)
class LoadedFrame:
    """A decoded frame: its size, the detector's input, and the full-resolution image
    when it was asked for (to cut crops from)."""

    size: tuple[int, int]  # (width, height), EXIF orientation applied
    input: np.ndarray  # float32 [1, 3, h, w] in [0, 1], the frame at the working size
    image: Image.Image | None


class OnnxDetector:
    """A moths detector on ONNX Runtime. Build it with :meth:`from_file`.

    Args:
        session: an open session on a detector file (``moths.task = detection``).
        source: the model file, for messages.
        min_score: keep boxes scoring at least this; default: the file's
            ``moths.score_threshold``.
        max_detections: keep at most this many boxes a frame (the best); default
            and upper bound: the file's ``moths.max_detections``.
        fast_decode: decode JPEG frames at reduced scale for the detector (the
            crops still come from the full frame): faster when the working size is
            at most half the frame's, not equal to the graph's own resize.

    Raises:
        ModelFormatError: not a detector file (a classifier's is named as such), or
            its inputs/outputs do not follow the contract.
        ValueError: ``min_score`` outside [0, 1], ``max_detections`` below 1.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        source: str,
        *,
        min_score: float | None = None,
        max_detections: int | None = None,
        fast_decode: bool = False,
    ) -> None:
        props = session.get_modelmeta().custom_metadata_map
        self.metadata = DetectorMetadata.from_props(props, source)
        _check_signature(session, source)
        self.session = session
        self.source = source
        self.min_score = self.metadata.score_threshold if min_score is None else min_score
        if not (math.isfinite(self.min_score) and 0 <= self.min_score <= 1):
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        most = self.metadata.max_detections if max_detections is None else max_detections
        if isinstance(most, bool) or not isinstance(most, int) or most < 1:
            raise ValueError(f"max_detections must be an integer >= 1, got {most!r}")
        self.max_detections = min(most, self.metadata.max_detections)
        self.fast_decode = fast_decode

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        providers: str | Sequence[str] = "auto",
        *,
        min_score: float | None = None,
        max_detections: int | None = None,
        num_threads: int | None = None,
        fast_decode: bool = False,
    ) -> OnnxDetector:
        """Open a detector exported by ``moths-export``.

        Args:
            path: the ``.onnx`` file, or ``zoo:ID[@VERSION]`` of a zoo entry with
                ``task: detection``.
            providers: as :meth:`OnnxClassifier.from_file`: ``"auto"`` (TensorRT,
                CUDA, CPU: the first available; a GPU provider that fails to start
                falls back), or names.
            min_score, max_detections, fast_decode: see the class.
            num_threads: ONNX Runtime intra-op threads; default one per physical core.

        Raises:
            FileNotFoundError: no such file.
            ValueError: unknown/unavailable provider, a file ONNX Runtime cannot load.
            ModelFormatError: not a detector file (a ValueError too).
            ZooError: a ``zoo:`` name that cannot be resolved or is not a detector.
        """
        local = zoo.resolve(path, task=zoo.DETECTION)
        engine = _engine(local) if TENSORRT in resolve_providers(providers) else None
        session, source = open_model_file(local, providers, num_threads, engine, zoo.DETECTION)
        return cls(
            session,
            source,
            min_score=min_score,
            max_detections=max_detections,
            fast_decode=fast_decode,
        )

    @property
    def classes(self) -> tuple[str, ...]:
        """The detector's class names."""
        return self.metadata.classes

    @property
    def provider(self) -> str:
        """The execution provider that runs the model."""
        return self.session.get_providers()[0]

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(width, height)`` the model sees a ``width`` x ``height`` frame at."""
        model_height, model_width = self.metadata.preprocessing.model_size(height, width)
        return model_width, model_height

    def detect(self, image: ImageInput) -> list[Detection]:
        """The boxes on one frame (a path or a PIL image), best first.

        Raises:
            ImageDecodeError: the file cannot be decoded (a ValueError).
        """
        frame = self.load(image)
        return self.detect_input(frame.input, frame.size)

    def load(self, image: ImageInput, keep_image: bool = False) -> LoadedFrame:
        """Decode a frame (EXIF orientation applied) into the detector's input.

        With ``fast_decode`` a JPEG decodes at reduced scale when that still covers
        the working size. With ``keep_image`` the full-resolution frame is kept too
        (decoded a second time, in full, when the first decode was reduced).

        Raises:
            ImageDecodeError: the file cannot be decoded (a ValueError).
        """
        draft = self.working_size if self.fast_decode else None
        decoded = decode_rgb(image, draft_size=draft)
        full = None
        if keep_image:
            drafted = decoded.image.size != decoded.full_size
            full = open_rgb(image) if drafted else decoded.image
        model_input = self.model_input(decoded.image, decoded.full_size)
        return LoadedFrame(decoded.full_size, model_input, full)

    def model_input(
        self, image: Image.Image, frame_size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """An RGB frame as the model input at its working size: float32
        ``[1, 3, h, w]`` in [0, 1]. ``frame_size``: the frame's full ``(width, height)``
        when ``image`` is a reduced decode of it (the working size follows the frame)."""
        size = self.working_size(*(frame_size or image.size))
        if image.size != size:
            image = resized_as_the_graph(image, size)
        x = np.asarray(image).transpose(2, 0, 1).astype(np.float32)
        x /= np.float32(255)
        return x[None]

    def detect_input(self, x: np.ndarray, frame_size: tuple[int, int]) -> list[Detection]:
        """The boxes for a model input made by :meth:`model_input`, mapped to a frame
        of ``frame_size`` ``(width, height)``; at least ``min_score``, at most
        ``max_detections``, best first."""
        boxes, scores, labels = self.session.run(_OUTPUTS, {DETECTOR_INPUT: x})
        order = np.argsort(-scores, kind="stable")[: self.max_detections]
        order = order[scores[order] >= self.min_score]
        width, height = frame_size
        scale = np.array([width / x.shape[3], height / x.shape[2]] * 2, dtype=np.float64)
        mapped = boxes[order].astype(np.float64) * scale
        mapped = np.clip(mapped, 0, [width, height, width, height])
        return [
            Detection(tuple(float(v) for v in box), float(scores[i]), self._label(int(labels[i])))
            for box, i in zip(mapped, order, strict=True)
        ]

    def _label(self, label: int) -> str:
        if not 1 <= label <= len(self.classes):
            raise ModelFormatError(
                f"{self.source} returned label {label}; its classes are 1..{len(self.classes)}"
            )
        return self.classes[label - 1]


def resized_as_the_graph(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resized to ``size`` ``(width, height)`` as the exported graph resizes a
    frame (``torch.nn.functional.interpolate``, bilinear, ``align_corners=False``, no
    antialiasing; ONNX ``Resize``): each output pixel samples the input at its centre
    mapped back, ``(x + 0.5) * in / out - 0.5``, from the four nearest pixels. Pillow's
    affine transform samples that way; it rounds down to whole grey levels (within 1.5
    of the graph's values, 0.5 on average)."""
    sx, sy = image.width / size[0], image.height / size[1]
    return image.transform(
        size, Image.Transform.AFFINE, (sx, 0, 0, 0, sy, 0), resample=Image.Resampling.BILINEAR
    )


def _check_signature(session: ort.InferenceSession, source: str) -> None:
    """The contract's input and outputs, so a file that breaks it fails here, by name."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if DETECTOR_INPUT not in inputs or len(inputs[DETECTOR_INPUT]) != 4:
        raise ModelFormatError(
            f"{source}: a detector takes one input {DETECTOR_INPUT!r} [1, 3, H, W] "
            f"(inputs: {', '.join(f'{k} {v}' for k, v in inputs.items())})"
        )
    outputs = {o.name for o in session.get_outputs()}
    missing = [name for name in _OUTPUTS if name not in outputs]
    if missing:
        raise ModelFormatError(
            f"{source}: a detector returns {', '.join(_OUTPUTS)}; missing {', '.join(missing)}"
        )


def _engine(path: str | os.PathLike) -> EngineSettings:
    """TensorRT's shape profile for a detector: every working size its preprocessing allows."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    probe = ort.InferenceSession(os.fspath(path), options, providers=[("CPUExecutionProvider", {})])
    props = probe.get_modelmeta().custom_metadata_map
    pre = DetectorMetadata.from_props(props, os.fspath(path)).preprocessing
    if pre.fixed_size is not None:
        shape = (1, 3, *pre.fixed_size)
        return EngineSettings(1, shapes=(shape, shape, shape))
    typical = (1, 3, *pre.model_size(3, 4))  # a 4:3 frame
    largest = (1, 3, pre.max_side, pre.max_side)
    return EngineSettings(1, shapes=((1, 3, _SMALLEST_SIDE, _SMALLEST_SIDE), typical, largest))
