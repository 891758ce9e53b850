"""Torchvision transforms built from a :class:`~moths_framework.preprocessing.Preprocessing`,
and :class:`FileTransform`, which decodes an image file straight to their first step's region.

The eval transform here is the reference that ONNX inference reproduces in
numpy (``moths_framework.inference``); a test keeps the two equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from moths_framework.images import open_rgb
from moths_framework.preprocessing import Preprocessing
from moths_framework.scaled_decode import (
    RESAMPLING,
    CentreCropRule,
    CropResize,
    Region,
    decode_region,
)

__all__ = ["FileTransform", "eval_transform", "train_transform"]

_RANDOM_RESIZED_CROPS = (T.RandomResizedCrop, v2.RandomResizedCrop)
_RESIZES = (T.Resize, v2.Resize)
_CENTER_CROPS = (T.CenterCrop, v2.CenterCrop)


def _interpolation(p: Preprocessing) -> T.InterpolationMode:
    return T.InterpolationMode(p.interpolation)


def eval_transform(p: Preprocessing) -> Callable:
    """Resize the shorter side to ``p.resize_size``, centre-crop ``p.input_size``, normalise."""
    return T.Compose(
        [
            T.Resize(p.resize_size, interpolation=_interpolation(p)),
            T.CenterCrop(p.input_size),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
        ]
    )


def train_transform(p: Preprocessing) -> Callable:
    """Default augmentation when a config gives none: random resized crop and flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(p.input_size, scale=(0.5, 1.0), interpolation=_interpolation(p)),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(p.mean, p.std),
        ]
    )


class FileTransform:
    """An image file to a tensor: ``transform`` applied to the decoded image.

    When ``transform`` starts with a ``RandomResizedCrop``, or with ``Resize`` (of the
    shorter side) and ``CenterCrop`` (torchvision's, v1 or v2), that first step is done
    while decoding, by :func:`moths_framework.scaled_decode.decode_region`: the crop is
    chosen on the full size read from the file's header (with torch's random numbers,
    as ``RandomResizedCrop`` draws them), a JPEG decodes at the smallest scale at which
    the crop keeps at least the output's pixels, and the rest of ``transform`` runs on
    the small image. Inference decodes the same way. Other transforms run on the
    image decoded whole.

    Args:
        transform: a torchvision ``Compose`` or a single transform of a PIL image.
        fast_decode: ``False`` decodes every image at full size (same crops, and
            torchvision's pixels exactly).
    """

    def __init__(self, transform: Callable, fast_decode: bool = True) -> None:
        steps = list(getattr(transform, "transforms", [transform]))
        self.region, self.resample, rest = _split_region(steps)
        self.rest = T.Compose(rest) if self.region is not None else transform
        self.fast_decode = fast_decode
        self.transform = transform

    def __call__(self, source: str | os.PathLike | Image.Image) -> Any:
        """Decode ``source`` and transform it; raises ImageDecodeError as decoding does."""
        if self.region is None:
            return self.rest(open_rgb(source))
        image = decode_region(source, self.region, self.resample, fast=self.fast_decode)
        return self.rest(image)

    def __repr__(self) -> str:
        return f"FileTransform({self.transform!r}, fast_decode={self.fast_decode})"


def _split_region(
    steps: Sequence[Callable],
) -> tuple[Callable[[int, int], Region] | None, int, list[Callable]]:
    """(the region of the first step(s), its Pillow filter, the steps after it), or
    ``(None, 0, steps)`` when the first step is not one the decoder can do."""
    first = steps[0] if steps else None
    if isinstance(first, _RANDOM_RESIZED_CROPS):
        return _random_resized_crop(first), _resample(first.interpolation), list(steps[1:])
    if (
        isinstance(first, _RESIZES)
        and len(steps) > 1
        and isinstance(steps[1], _CENTER_CROPS)
        and _shorter_side(first) is not None
    ):
        region = CentreCropRule(_shorter_side(first), _pair(steps[1].size))
        return region, _resample(first.interpolation), list(steps[2:])
    return None, 0, list(steps)


@dataclass(frozen=True)
class _RandomResizedCropRule:
    """``RandomResizedCrop``'s draw as a function of the full size (picklable)."""

    size: tuple[int, int]  # (height, width)
    scale: tuple[float, float]
    ratio: tuple[float, float]

    def __call__(self, full_width: int, full_height: int) -> CropResize:
        # torchvision's own draw, on a stand-in of the image's size (no memory).
        stand_in = torch.empty(1, 1, 1).expand(1, full_height, full_width)
        top, left, h, w = T.RandomResizedCrop.get_params(stand_in, self.scale, self.ratio)
        return CropResize((left, top, left + w, top + h), (self.size[1], self.size[0]))


def _random_resized_crop(step: T.RandomResizedCrop) -> _RandomResizedCropRule:
    return _RandomResizedCropRule(
        _pair(step.size), tuple(map(float, step.scale)), tuple(map(float, step.ratio))
    )


def _shorter_side(step: T.Resize) -> int | None:
    size = step.size
    if isinstance(size, int):
        return size if step.max_size is None else None
    if isinstance(size, Sequence) and len(size) == 1 and step.max_size is None:
        return int(size[0])
    return None


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return (int(size[0]), int(size[0])) if len(size) == 1 else (int(size[0]), int(size[1]))


def _resample(interpolation: T.InterpolationMode | str | int) -> int:
    if isinstance(interpolation, T.InterpolationMode):
        return RESAMPLING[interpolation.value]
    if isinstance(interpolation, str):  # v2's transforms keep the mode's name
        return RESAMPLING[T.InterpolationMode(interpolation).value]
    return int(interpolation)  # a Pillow filter given directly
