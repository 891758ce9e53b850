"""``TorchvisionDetector``: torchvision's Faster R-CNN and SSDlite detection models."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models
from torchvision.ops.misc import FrozenBatchNorm2d

from moths_framework.model.backbone import BackboneError, load_weights_strictly
from moths_framework.model.detector import Detector, DetectorError
from moths_framework.preprocessing import IMAGENET_MEAN, IMAGENET_STD, DetectorPreprocessing
from moths_plugin_torchvision.tiny_detector import fasterrcnn_tiny

__all__ = ["MODELS", "TorchvisionDetector"]


@dataclass(frozen=True)
class _Model:
    """What the builder of one torchvision detection model does, as data."""

    head: str  # the class-specific layers: re-initialised when pretrained weights have others
    min_side: int
    max_side: int
    fixed: bool = False  # resized to min_side x min_side (SSD), aspect ratio not kept
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    frozen_when_pretrained: bool = False  # torchvision freezes BatchNorm when it loads weights
    builder: Callable[..., nn.Module] | None = None  # not one of torchvision's (no weights)


_FASTER = "roi_heads.box_predictor."
#: The supported models of ``torchvision.models.detection``, by name.
MODELS: dict[str, _Model] = {
    "fasterrcnn_mobilenet_v3_large_fpn": _Model(_FASTER, 800, 1333, frozen_when_pretrained=True),
    "fasterrcnn_mobilenet_v3_large_320_fpn": _Model(_FASTER, 320, 640, frozen_when_pretrained=True),
    "fasterrcnn_resnet50_fpn": _Model(_FASTER, 800, 1333, frozen_when_pretrained=True),
    "fasterrcnn_resnet50_fpn_v2": _Model(_FASTER, 800, 1333),
    "ssdlite320_mobilenet_v3_large": _Model(
        "head.classification_head.", 320, 320, fixed=True, mean=(0.5,) * 3, std=(0.5,) * 3
    ),
    "fasterrcnn_tiny": _Model(_FASTER, 320, 640, builder=fasterrcnn_tiny),
}


class TorchvisionDetector(Detector):
    """A detection model of torchvision, built for your classes.

    Args:
        name: one of :data:`MODELS`: ``fasterrcnn_mobilenet_v3_large_fpn`` (AMI's
            desktop app), ``fasterrcnn_mobilenet_v3_large_320_fpn``,
            ``fasterrcnn_resnet50_fpn``, ``fasterrcnn_resnet50_fpn_v2``,
            ``ssdlite320_mobilenet_v3_large``, or ``fasterrcnn_tiny`` (0.8 M
            parameters, no pretrained weights: demos, tests, easy frames; see
            :mod:`moths_plugin_torchvision.tiny_detector`).
        pretrained: load torchvision's COCO weights (downloaded, as torchvision
            does); the class layers are new, for your classes.
        pretrained_file: a local state dict of the same model instead (the file
            torchvision downloads, or a detector trained elsewhere), for offline
            machines; class layers of another size are re-initialised, every
            other key must fit.
        min_side, max_side: the resize rule (default: the model's own, 800 and
            1333 for most); SSDlite works at a fixed 320 x 320.
        frozen_batchnorm: BatchNorm with fixed statistics; default as torchvision:
            frozen where it freezes them for pretrained weights.
        score_threshold, nms_iou, max_detections: the postprocessing (see
            :class:`~moths_framework.model.detector.Detector`).

    Raises:
        DetectorError: an unknown name (close matches are suggested), a size for
            SSDlite, a weights file that is missing or does not fit, a failed download.
    """

    def __init__(
        self,
        name: str = "fasterrcnn_mobilenet_v3_large_fpn",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        min_side: int | None = None,
        max_side: int | None = None,
        frozen_batchnorm: bool | None = None,
        score_threshold: float = 0.5,
        nms_iou: float = 0.5,
        max_detections: int = 500,
    ) -> None:
        super().__init__(
            score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
        )
        self.name = name
        self.arch = _model(name)
        if pretrained and pretrained_file is not None:
            raise DetectorError("give pretrained or pretrained_file, not both")
        if pretrained_file is not None and not Path(pretrained_file).is_file():
            raise DetectorError(f"weights file {pretrained_file!r} for {name!r} not found")
        if pretrained and self.arch.builder is not None:
            raise DetectorError(f"{name} has no pretrained weights: train it from random ones")
        if self.arch.fixed and (min_side is not None or max_side is not None):
            raise DetectorError(f"{name} works at a fixed {self.arch.min_side} px: no min/max_side")
        self.pretrained = pretrained
        self.pretrained_file = pretrained_file
        loads_weights = pretrained or pretrained_file is not None
        if frozen_batchnorm is None:
            frozen_batchnorm = self.arch.frozen_when_pretrained and loads_weights
        self.frozen_batchnorm = frozen_batchnorm
        side = self.arch.min_side
        self._preprocessing = DetectorPreprocessing(
            min_side=min_side or side,
            max_side=max_side or self.arch.max_side,
            fixed_size=(side, side) if self.arch.fixed else None,
            mean=self.arch.mean,
            std=self.arch.std,
        )

    @property
    def preprocessing(self) -> DetectorPreprocessing:
        return self._preprocessing

    @classmethod
    def small_example(cls) -> TorchvisionDetector:
        # The 320 model scores 150 proposals a frame, not 1000: the check runs 5x faster.
        return cls("fasterrcnn_mobilenet_v3_large_320_fpn", min_side=128, max_side=160)

    def spec(self) -> dict[str, Any]:
        spec = super().spec()  # pretrained off: the checkpoint has the weights ...
        spec["init_args"]["frozen_batchnorm"] = self.frozen_batchnorm  # ... and the same layers
        return spec

    def build(self, num_classes: int) -> nn.Module:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise DetectorError(f"num_classes must be a positive integer, got {num_classes!r}")
        # Built without weights, then loaded: the same layers whatever the weights, so a
        # checkpoint's spec (pretrained off) rebuilds exactly what was trained.
        if self.arch.builder is not None:
            model = self.arch.builder(num_classes=num_classes + 1, **self._builder_arguments())
        else:
            model = models.get_model(
                self.name, weights=None, weights_backbone=None, num_classes=num_classes + 1,
                **self._builder_arguments(),
            )  # fmt: skip
        if self.frozen_batchnorm:
            _freeze_batchnorm(model)
        state, source = self._pretrained_state()
        if state is not None:
            self._load(model, state, source)
        return model

    def _builder_arguments(self) -> dict[str, Any]:
        pre = self._preprocessing
        if self.arch.fixed:  # SSD: its size is fixed by the builder
            return {
                "score_thresh": self.score_threshold,
                "nms_thresh": self.nms_iou,
                "detections_per_img": self.max_detections,
                "image_mean": list(pre.mean),
                "image_std": list(pre.std),
            }
        return {
            "min_size": pre.min_side,
            "max_size": pre.max_side,
            "image_mean": list(pre.mean),
            "image_std": list(pre.std),
            "box_score_thresh": self.score_threshold,
            "box_nms_thresh": self.nms_iou,
            "box_detections_per_img": self.max_detections,
            # No cut on proposals' scores (the 320 model's default is 0.05): a frame with
            # no proposal left would make the exported graph fail in ONNX Runtime.
            "rpn_score_thresh": 0.0,
        }

    def _pretrained_state(self) -> tuple[Mapping[str, torch.Tensor] | None, str]:
        if self.pretrained_file is not None:
            return _read_state(Path(self.pretrained_file)), self.pretrained_file
        if not self.pretrained:
            return None, ""
        weights = models.get_model_weights(self.name).DEFAULT
        try:
            return weights.get_state_dict(progress=True, check_hash=True), str(weights)
        except Exception as err:  # downloads fail in many ways
            raise DetectorError(
                f"could not get the COCO weights of {self.name} ({type(err).__name__}: {err}); "
                "on an offline machine set pretrained_file to a local copy"
            ) from err

    def _load(self, model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Load ``state``; class layers of another shape are dropped (they stay new)."""
        own = model.state_dict()
        new = {
            k
            for k, v in state.items()
            if k.startswith(self.arch.head) and k in own and v.shape != own[k].shape
        }
        state = {k: own[k] if k in new else v for k, v in state.items()}
        try:
            load_weights_strictly(model, state, source, f"torchvision detector {self.name!r}")
        except BackboneError as err:
            raise DetectorError(str(err)) from err


def _model(name: str) -> _Model:
    if name in MODELS:
        return MODELS[name]
    close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise DetectorError(
        f"unknown or unsupported torchvision detector {name!r} (supported: "
        f"{', '.join(MODELS)}){hint}"
    )


def _read_state(path: Path) -> Mapping[str, torch.Tensor]:
    """A state dict file, plain or under ``model``/``state_dict`` (training scripts' habit)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types
        raise DetectorError(f"cannot read weights file {str(path)!r}: {err}") from err
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise DetectorError(f"weights file {str(path)!r} is not a state dict (name -> tensor)")
    return state


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` by a ``FrozenBatchNorm2d`` holding its statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for buffer in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, buffer).copy_(getattr(child, buffer).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)
