"""Detector plugin interface (entry-point group ``moths_framework.detectors``)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from torch import nn

from moths_framework.model.spec import RecordsInitArgs
from moths_framework.preprocessing import DetectorPreprocessing

__all__ = ["POSTPROCESS_ATTRIBUTES", "WEIGHT_SOURCES", "Detector", "DetectorError"]

# Where torchvision's detection models keep their postprocessing (FasterRCNN on
# ``roi_heads``; RetinaNet, FCOS and SSD on the model itself).
POSTPROCESS_ATTRIBUTES = ("score_thresh", "nms_thresh", "detections_per_img")
# Constructor arguments that name weights to load: a checkpoint carries the
# weights, so its spec never asks for them again.
WEIGHT_SOURCES = {"pretrained": False, "pretrained_file": None, "pretrained_backbone": False}


class DetectorError(ValueError):
    """A detector cannot be built: unknown model name, bad weights file, ..."""


class Detector(RecordsInitArgs, ABC):
    """Builds a torchvision-style detection model and says how it sees a frame.

    ``build(num_classes)`` returns an ``nn.Module`` that, in eval mode, takes a
    list of ``(3, H, W)`` float images in [0, 1] (any sizes) and returns one dict
    per image: ``boxes`` float ``[K, 4]`` (x1, y1, x2, y2 in that image's pixels),
    ``scores`` float ``[K]`` in [0, 1], highest first, and ``labels`` int64
    ``[K]`` in 1..num_classes (0 is the background). In train mode it takes
    ``(images, targets)``, a target being ``{"boxes": [M, 4], "labels": [M]}``,
    and returns a dict of scalar losses. torchvision's detection models do all
    of this, resizing inside per :attr:`preprocessing` and mapping boxes back.

    An implementation must:

    - implement :meth:`build` and :attr:`preprocessing` (what the built model does);
    - pass ``score_threshold``, ``nms_iou`` and ``max_detections`` on to this
      class, and build models that apply them; :meth:`set_postprocess` changes
      them on a built model (the default handles torchvision's models);
    - accept ``pretrained`` (and ``pretrained_file``, a local weights file, for
      offline machines) when it has pretrained weights;
    - provide :meth:`small_example`, so the contract test runs on it.

    The constructor arguments are recorded (:meth:`spec`), so a checkpoint can
    rebuild the same detector without its config file.
    """

    def __init__(
        self, *, score_threshold: float = 0.5, nms_iou: float = 0.5, max_detections: int = 500
    ) -> None:
        for name, value in (("score_threshold", score_threshold), ("nms_iou", nms_iou)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise DetectorError(f"{name} must be in [0, 1], got {value!r}")
        if isinstance(max_detections, bool) or not isinstance(max_detections, int):
            raise DetectorError(f"max_detections must be an integer, got {max_detections!r}")
        if max_detections < 1:
            raise DetectorError(f"max_detections must be at least 1, got {max_detections}")
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = max_detections

    @property
    @abstractmethod
    def preprocessing(self) -> DetectorPreprocessing:
        """The resize rule and normalisation the built model applies inside."""

    @abstractmethod
    def build(self, num_classes: int) -> nn.Module:
        """A detection model for ``num_classes`` object classes (background not counted)."""

    @classmethod
    def small_example(cls) -> Detector:
        """A small instance (random weights, small frames), for the contract test."""
        raise NotImplementedError(f"{cls.__name__} does not provide small_example()")

    def set_postprocess(
        self, model: nn.Module, *, score_threshold: float, nms_iou: float, max_detections: int
    ) -> None:
        """Make a built ``model`` keep boxes scoring above ``score_threshold``, suppress a
        box overlapping a higher-scoring one by more than ``nms_iou``, and return at
        most ``max_detections`` boxes. Export uses it to cut at no score.

        Raises:
            DetectorError: the model keeps these settings elsewhere than torchvision's
                detection models do; override this method.
        """
        owner = getattr(model, "roi_heads", model)
        if not all(hasattr(owner, name) for name in POSTPROCESS_ATTRIBUTES):
            raise DetectorError(
                f"{type(self).__name__}.set_postprocess: {type(model).__name__} has no "
                f"{', '.join(POSTPROCESS_ATTRIBUTES)} (torchvision's detection models have "
                "them); override set_postprocess"
            )
        owner.score_thresh = float(score_threshold)
        owner.nms_thresh = float(nms_iou)
        owner.detections_per_img = int(max_detections)

    def postprocess(self) -> dict[str, Any]:
        """This detector's ``score_threshold``, ``nms_iou`` and ``max_detections``."""
        return {
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "max_detections": self.max_detections,
        }

    def spec(self) -> dict[str, Any]:
        """``class_path`` and ``init_args`` that rebuild this detector (random weights)."""
        return self._spec(WEIGHT_SOURCES)
