"""Box-aware augmentation of trap frames (``torchvision.transforms.v2``).

A transform gets ``(image, target)``: a ``tv_tensors.Image`` (uint8, CHW) and
``{"boxes": tv_tensors.BoundingBoxes (XYXY), "labels": int64}``; geometric
transforms move the boxes with the pixels. After the configured augmentations
every frame is finished alike (:func:`finish_frame`): boxes clamped to the frame,
boxes left with no area dropped with their labels, pixels to float 0..1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

__all__ = ["MIN_BOX_SIDE", "default_frame_augmentation", "finish_frame", "frame_transform"]

# A box narrower or lower than this (pixels) after augmentation is no moth any more.
MIN_BOX_SIDE = 2.0


def default_frame_augmentation(
    flip: float = 0.5,
    scale: tuple[float, float] = (0.75, 1.25),
    scale_p: float = 0.5,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.02,
) -> list[Callable]:
    """What a detector trains with when a config lists none: horizontal flip, scale
    jitter about the centre (the frame keeps its size; moths grow or shrink, those
    pushed out of the frame are dropped), and colour jitter (lamps and cameras differ).

    Args:
        flip: probability of a horizontal flip.
        scale: range of the zoom factor.
        scale_p: probability of a zoom.
        brightness, contrast, saturation, hue: ``ColorJitter``'s ranges.
    """
    return [
        v2.RandomHorizontalFlip(p=flip),
        v2.RandomApply([v2.RandomAffine(degrees=0.0, scale=scale)], p=scale_p),
        v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue),
    ]


def finish_frame() -> Callable:
    """Clamp boxes to the frame, drop those under :data:`MIN_BOX_SIDE` pixels a side
    (with their labels), and scale the pixels to float 0..1."""
    return v2.Compose(
        [
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=MIN_BOX_SIDE),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def frame_transform(augmentations: Sequence[Callable] = ()) -> Callable:
    """``augmentations`` in order, then :func:`finish_frame`."""
    return v2.Compose([*augmentations, finish_frame()])
