"""The evaluation preprocessing of a model, as data.

One description, three users: the training eval transform (torchvision), the
ONNX metadata, and ONNX Runtime inference (numpy). The resize rule is timm's:
resize the shorter side to ``input_size / crop_pct``, then centre-crop to
``input_size``. No torch import.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing"]

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
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values, std > 0: {self.mean}, {self.std}")

    @property
    def resize_size(self) -> int:
        """Length the shorter image side is resized to before the centre crop."""
        return math.floor(max(self.input_size) / self.crop_pct)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        return cls(**json.loads(text))
