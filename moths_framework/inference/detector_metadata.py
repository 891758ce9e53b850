"""The detector file contract: what ``moths-export`` writes into a detector's ONNX file.

An exported detector has

- one input ``images``: float32 ``[1, 3, H, W]``, the frame's RGB pixels in
  [0, 1], any ``H`` and ``W`` (the model resizes and normalises inside, per
  ``moths.preprocessing``);
- three outputs: ``boxes`` float32 ``[K, 4]`` (x1, y1, x2, y2 in the input
  frame's pixels), ``scores`` float32 ``[K]`` (highest first) and ``labels``
  int64 ``[K]`` (1..N: label ``k`` is ``classes[k - 1]``; 0 is the background
  and never returned);
- string ``metadata_props``: ``moths.task = detection`` and the keys of
  :class:`DetectorMetadata` below.

The graph applies non-maximum suppression (``moths.nms_iou``) and keeps at most
``moths.max_detections`` boxes, but cuts at no score: a reader keeps the boxes
scoring at least ``moths.score_threshold`` (or its own threshold). Because NMS
lets a box suppress only boxes scoring lower, that cut gives exactly the boxes
the graph would give with the threshold inside, and any threshold works.

No torch import: this module is read on production boxes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from moths_framework.inference.metadata import (
    FORMAT_KEY,
    FORMAT_VERSION,
    MODEL_CARD_KEY,
    PRECISION_KEY,
    PRECISION_VALUES,
    PREPROCESSING_KEY,
    TASK_KEY,
    ModelFormatError,
)
from moths_framework.preprocessing import DetectorPreprocessing

__all__ = [
    "BOXES_OUTPUT",
    "CLASSES_KEY",
    "DETECTION",
    "DETECTOR_INPUT",
    "LABELS_OUTPUT",
    "MAX_DETECTIONS_KEY",
    "NMS_IOU_KEY",
    "SCORES_OUTPUT",
    "SCORE_THRESHOLD_KEY",
    "DetectorMetadata",
]

DETECTION = "detection"  # the value of moths.task
DETECTOR_INPUT = "images"
BOXES_OUTPUT = "boxes"
SCORES_OUTPUT = "scores"
LABELS_OUTPUT = "labels"
CLASSES_KEY = "moths.classes"  # JSON list of the N class names; label k names classes[k - 1]
SCORE_THRESHOLD_KEY = "moths.score_threshold"  # the default cut a reader applies
NMS_IOU_KEY = "moths.nms_iou"  # the IoU above which the graph suppresses a lower-scoring box
MAX_DETECTIONS_KEY = "moths.max_detections"  # the most boxes the graph returns for a frame
_REQUIRED_KEYS = (
    FORMAT_KEY,
    TASK_KEY,
    CLASSES_KEY,
    PREPROCESSING_KEY,
    SCORE_THRESHOLD_KEY,
    NMS_IOU_KEY,
    MAX_DETECTIONS_KEY,
    MODEL_CARD_KEY,
)


@dataclass(frozen=True)
class DetectorMetadata:
    """Everything a detector file carries besides its weights.

    Attributes:
        classes: the N class names; label ``k`` (1..N) is ``classes[k - 1]``.
        preprocessing: the resize rule and normalisation the graph applies inside.
        score_threshold: boxes scoring below it are dropped by default (a reader's
            ``--min-score`` replaces it).
        nms_iou: the IoU at which the graph's NMS suppresses the lower-scoring box.
        max_detections: the most boxes the graph returns for one frame.
        model_card: free-form facts (detector spec, metrics, export date, ...).
        precision: how the weights are stored (``fp32``).
    """

    classes: tuple[str, ...]
    preprocessing: DetectorPreprocessing
    score_threshold: float = 0.5
    nms_iou: float = 0.5
    max_detections: int = 500
    model_card: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names, at least one: {self.classes}")
        for name, value in (("score_threshold", self.score_threshold), ("nms_iou", self.nms_iou)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if isinstance(self.max_detections, bool) or not isinstance(self.max_detections, int):
            raise ValueError(f"max_detections must be an integer, got {self.max_detections!r}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be at least 1, got {self.max_detections}")
        if self.precision not in PRECISION_VALUES:
            raise ValueError(f"{PRECISION_KEY} must be one of {', '.join(PRECISION_VALUES)}")

    def class_name(self, label: int) -> str:
        """The name of output label ``label`` (1..N)."""
        if not 1 <= label <= len(self.classes):
            raise ValueError(f"label {label} is not one of 1..{len(self.classes)}")
        return self.classes[label - 1]

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of an ONNX file, as string key -> string value."""
        return {
            FORMAT_KEY: FORMAT_VERSION,
            TASK_KEY: DETECTION,
            CLASSES_KEY: json.dumps(list(self.classes), ensure_ascii=False),
            PREPROCESSING_KEY: self.preprocessing.to_json(),
            SCORE_THRESHOLD_KEY: repr(float(self.score_threshold)),
            NMS_IOU_KEY: repr(float(self.nms_iou)),
            MAX_DETECTIONS_KEY: str(self.max_detections),
            MODEL_CARD_KEY: json.dumps(self.model_card, ensure_ascii=False, sort_keys=True),
            PRECISION_KEY: self.precision,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> DetectorMetadata:
        """Read the metadata written by :meth:`to_props`.

        Raises:
            ModelFormatError: the file is not a moths detector (a classifier, no
                moths metadata), has another format version, or a key is missing
                or unreadable.
        """
        task = props.get(TASK_KEY)
        if task != DETECTION:
            if not any(key.startswith("moths.") for key in props):
                what = "it has no moths.* metadata"
            elif task in (None, "classification"):
                what = (
                    f"{TASK_KEY} is {task or 'absent'}: it is a classifier; open it as one "
                    "(OnnxClassifier, moths-infer --model)"
                )
            else:
                what = f"{TASK_KEY} is {task}"
            raise ModelFormatError(f"{source} is not a moths-export detector: {what}")
        missing = [key for key in _REQUIRED_KEYS if key not in props]
        if missing:
            raise ModelFormatError(
                f"{source}: detector metadata key(s) {', '.join(missing)} missing"
            )
        if props[FORMAT_KEY] != FORMAT_VERSION:
            raise ModelFormatError(
                f"{source} has {FORMAT_KEY}={props[FORMAT_KEY]!r}; this moths-framework reads "
                f"format {FORMAT_VERSION}: install the version that exported it, or re-export"
            )
        try:
            classes = json.loads(props[CLASSES_KEY])
            card = json.loads(props[MODEL_CARD_KEY])
            if not isinstance(classes, list) or not isinstance(card, dict):
                raise ValueError(f"{CLASSES_KEY} must be a list and {MODEL_CARD_KEY} an object")
            return cls(
                classes=tuple(classes),
                preprocessing=DetectorPreprocessing.from_json(props[PREPROCESSING_KEY]),
                score_threshold=float(props[SCORE_THRESHOLD_KEY]),
                nms_iou=float(props[NMS_IOU_KEY]),
                max_detections=int(props[MAX_DETECTIONS_KEY]),
                model_card=card,
                precision=props.get(PRECISION_KEY, "fp32"),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise ModelFormatError(f"{source}: unreadable detector metadata: {error}") from error
