"""The evaluation preprocessing in Pillow + numpy, equal to the torchvision reference.

:func:`moths_framework.data.transforms.eval_transform` is ``Resize(resize_size)``,
``CenterCrop(input_size)``, ``ToTensor()``, ``Normalize(mean, std)``. On a PIL
image torchvision's ``Resize`` calls Pillow's ``Image.resize`` (always
antialiased), so doing the same here gives the same pixels; the geometry
(torchvision's integer arithmetic for the output size and crop offsets) is
:mod:`moths_framework.scaled_decode`'s, which training and validation use too.
:func:`model_input` decodes a file straight to the input (a JPEG at reduced
scale, see that module). No torch import.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from moths_framework.images import ImageSource
from moths_framework.inference.frame_crops import cut_centre_crop
from moths_framework.preprocessing import Preprocessing
from moths_framework.scaled_decode import (
    RESAMPLING,
    center_crop_box,
    cut_region,
    decode_region,
    eval_region,
    resized_size,
)

__all__ = [
    "center_crop_box",
    "crop_input",
    "model_input",
    "normalise",
    "preprocess",
    "resize_and_crop",
    "resized_size",
]


def preprocess(image: Image.Image, p: Preprocessing) -> np.ndarray:
    """Turn an RGB image into one model input, float32 ``[3, H, W]``.

    Args:
        image: an RGB image (as :func:`moths_framework.images.open_rgb` returns).
        p: the model's preprocessing.

    Returns:
        The normalised CHW array, equal to ``eval_transform(p)(image).numpy()``.
    """
    return normalise(resize_and_crop(image, p), p)


def model_input(
    source: ImageSource, p: Preprocessing, *, fast: bool = True, max_pixels: int | None = None
) -> np.ndarray:
    """Decode an image file (or bytes, or a PIL image) straight to one model input.

    With ``fast`` a JPEG decodes at the smallest reduced scale that still covers the
    resize (:func:`moths_framework.scaled_decode.decode_region`, the validation
    transform's own decode); otherwise, and for other formats, this equals
    :func:`preprocess` of :func:`~moths_framework.images.open_rgb`.
    """
    image = decode_region(
        source, eval_region(p), RESAMPLING[p.interpolation], fast=fast, max_pixels=max_pixels
    )
    return normalise(image, p)


def crop_input(image: Image.Image, box: tuple[int, int, int, int], p: Preprocessing) -> np.ndarray:
    """One model input from ``box`` (left, top, right, bottom, whole pixels) of an RGB image:
    :func:`preprocess` of ``image.crop(box)``, resizing only what its centre crop keeps
    (:func:`~moths_framework.inference.frame_crops.cut_centre_crop`: where a sliver's
    long side is cut, a pixel may be a grey level or two apart)."""
    left, top, right, bottom = box
    region = eval_region(p)(right - left, bottom - top)
    return normalise(cut_centre_crop(image, box, region, RESAMPLING[p.interpolation]), p)


def normalise(image: Image.Image, p: Preprocessing) -> np.ndarray:
    """An RGB image of the input size as float32 CHW, scaled to [0, 1] and normalised."""
    # Same float32 operations, in the same order, as ToTensor + Normalize, done in
    # place on one CHW copy (bit-identical, and a quarter faster than temporaries).
    x = np.asarray(image).transpose(2, 0, 1).astype(np.float32, order="C")
    x /= np.float32(255)
    x -= np.asarray(p.mean, dtype=np.float32).reshape(3, 1, 1)
    x /= np.asarray(p.std, dtype=np.float32).reshape(3, 1, 1)
    return x


def resize_and_crop(image: Image.Image, p: Preprocessing) -> Image.Image:
    """The geometric half of :func:`preprocess`: an RGB image of ``p.input_size``.

    ``moths-stats`` measures pixel statistics on exactly these pixels.
    """
    region = eval_region(p)(image.width, image.height)
    return cut_region(image, region, RESAMPLING[p.interpolation])
