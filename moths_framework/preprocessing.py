"""The evaluation preprocessing of a model, as data.

One description, three users: the training eval transform (torchvision), the
ONNX metadata, and ONNX Runtime inference (numpy). The resize rule is timm's:
resize the shorter side to ``input_size / crop_pct``, then centre-crop to
``input_size``. A detector's is :class:`DetectorPreprocessing`: torchvision's
detection resize (shorter side to ``min_side``, longer side at most
``max_side``), done inside the model. No torch import.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DetectorPreprocessing", "Preprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes a model input.

    Attributes:
        input_size: (height, width) of the model input.
        crop_pct: the centre crop keeps this fraction of the resized shorter side.
        interpolation: resampling filter for the resize.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided by.
    """

    input_size: tuple[int, int] = (224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, int):
            object.__setattr__(self, "input_size", (size, size))
        else:
            object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}"
            )
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        _check_mean_std(self.mean, self.std)

    @property
    def resize_size(self) -> int:
        """Length the shorter image side is resized to before the centre crop."""
        return math.floor(max(self.input_size) / self.crop_pct)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class DetectorPreprocessing:
    """How a detector sees a frame: torchvision's ``GeneralizedRCNNTransform`` rule.

    The model takes the frame as it is (RGB, float in [0, 1], any size), resizes
    it internally and maps its boxes back to the frame's pixels; this says what
    the model does, so a reader can shrink a huge frame first without changing
    what the model sees.

    Attributes:
        min_side: the shorter side is scaled to this ...
        max_side: ... unless the longer side would then exceed this, which then
            sets the scale (aspect ratio kept).
        fixed_size: ``(height, width)``: resized to exactly this instead (SSD),
            aspect ratio not kept; ``min_side`` and ``max_side`` then equal its sides.
        mean: per-channel mean subtracted inside the model.
        std: per-channel standard deviation divided by inside the model.
    """

    min_side: int = 800
    max_side: int = 1333
    fixed_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        if self.fixed_size is not None:
            fixed = (int(self.fixed_size[0]), int(self.fixed_size[1]))
            object.__setattr__(self, "fixed_size", fixed)
            object.__setattr__(self, "min_side", min(fixed))
            object.__setattr__(self, "max_side", max(fixed))
        object.__setattr__(self, "min_side", int(self.min_side))
        object.__setattr__(self, "max_side", int(self.max_side))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if not 0 < self.min_side <= self.max_side:
            raise ValueError(
                f"need 0 < min_side <= max_side, got min_side {self.min_side}, "
                f"max_side {self.max_side}"
            )
        _check_mean_std(self.mean, self.std)

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) a ``height`` x ``width`` frame is resized to for the model:
        ``floor(side * scale + 0.001)``, ``scale`` the largest that keeps the shorter side
        at most ``min_side`` and the longer at most ``max_side`` (the 0.001 keeps the side
        that sets the scale on its integer through float32 rounding)."""
        if self.fixed_size is not None:
            return self.fixed_size
        scale = min(self.min_side / min(height, width), self.max_side / max(height, width))
        return math.floor(height * scale + 1e-3), math.floor(width * scale + 1e-3)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DetectorPreprocessing:
        return cls(**json.loads(text))


def _check_mean_std(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values, std > 0: {mean}, {std}")
