"""Torchvision transforms built from a :class:`~moths_framework.preprocessing.Preprocessing`.

The eval transform here is the reference that ONNX inference reproduces in
numpy (``moths_framework.inference``); a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Callable

from torchvision import transforms as T

from moths_framework.preprocessing import Preprocessing

__all__ = ["eval_transform", "train_transform"]


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
