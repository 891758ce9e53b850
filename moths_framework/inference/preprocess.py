"""The evaluation preprocessing in Pillow + numpy, equal to the torchvision reference.

:func:`moths_framework.data.transforms.eval_transform` is ``Resize(resize_size)``,
``CenterCrop(input_size)``, ``ToTensor()``, ``Normalize(mean, std)``. On a PIL
image torchvision's ``Resize`` calls Pillow's ``Image.resize`` (always
antialiased), so doing the same here gives the same pixels; the only thing to
copy is torchvision's integer arithmetic for the output size and crop offsets.
No torch import.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from moths_framework.preprocessing import Preprocessing

__all__ = [
    "center_crop_box",
    "jpeg_draft_size",
    "preprocess",
    "resize_and_crop",
    "resized_size",
]

# torchvision's ``pil_modes_mapping`` for the interpolations Preprocessing allows.
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def resized_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``shorter_side``.

    The longer side is truncated, not rounded, as torchvision's
    ``_compute_resized_output_size`` does (``int(size * long / short)``).
    """
    if width <= height:
        return shorter_side, int(shorter_side * height / width)
    return int(shorter_side * width / height), shorter_side


def center_crop_box(
    width: int, height: int, crop_height: int, crop_width: int
) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of torchvision's ``CenterCrop``.

    Offsets are ``int(round((size - crop) / 2))`` (Python rounds halves to even).
    When the crop is larger than the image, torchvision pads with zeros first,
    ``(crop - size) // 2`` before; a negative offset makes Pillow's ``crop``
    fill the same zeros.
    """
    left = _crop_offset(width, crop_width)
    top = _crop_offset(height, crop_height)
    return left, top, left + crop_width, top + crop_height


def _crop_offset(size: int, crop: int) -> int:
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))


def preprocess(image: Image.Image, p: Preprocessing) -> np.ndarray:
    """Turn an RGB image into one model input, float32 ``[3, H, W]``.

    Args:
        image: an RGB image (as :func:`moths_framework.images.open_rgb` returns).
        p: the model's preprocessing.

    Returns:
        The normalised CHW array, equal to ``eval_transform(p)(image).numpy()``.
    """
    image = resize_and_crop(image, p)
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
    if image.mode != "RGB":
        image = image.convert("RGB")
    size = resized_size(image.width, image.height, p.resize_size)
    if size != image.size:
        image = image.resize(size, _PIL_FILTERS[p.interpolation])
    crop_height, crop_width = p.input_size
    return image.crop(center_crop_box(image.width, image.height, crop_height, crop_width))


def jpeg_draft_size(p: Preprocessing) -> tuple[int, int]:
    """The ``draft_size`` for :func:`~moths_framework.images.open_rgb` in fast-decode mode.

    The resize target on both sides: a JPEG then decodes at the smallest of 1/2,
    1/4 or 1/8 scale (in the DCT, so much cheaper) whose shorter side still
    reaches ``p.resize_size``, and the one antialiased resize takes it from
    there. Not bit-equal with a full decode: on photo-like JPEGs pixels differ
    by about 0.5 grey levels on average, 99 % by at most 3 (docs/commands/infer.md
    has the numbers; a test holds the bound).
    """
    return p.resize_size, p.resize_size
