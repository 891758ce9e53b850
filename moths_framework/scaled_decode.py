"""Decode an image straight to a model's input region: a JPEG at the smallest scale that covers it.

A model input is a region of an image resized to a fixed size: evaluation's centre
crop (:class:`CentreCrop`: shorter side resized to ``input_size / crop_pct``, then the
centre cut out) or training's random resized crop (:class:`CropResize`). A JPEG holds
its picture as DCT blocks, and libjpeg decodes it at 1/2, 1/4 or 1/8 scale for a
fraction of the cost (``Image.draft``). :func:`decode_region` picks the region from the
image's full size (read from the header), decodes at the smallest scale at which the
region still has at least the output's pixels, and resizes once, antialiased, from the
region's exact place in the reduced picture. A small training crop of a large photo
thus decodes at full scale and keeps its detail; a whole-photo crop decodes at 1/4.

Training and validation (:mod:`moths_framework.data.transforms`) and inference
(:mod:`moths_framework.inference`) all call :func:`decode_region`, so the same region of
the same file gives the same pixels everywhere. With ``fast=False``, for formats other
than JPEG and for PIL images, the image decodes at full size, and the pixels equal
torchvision's (``Resize`` + ``CenterCrop``; ``RandomResizedCrop``'s crop then resize).

No torch import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from moths_framework.images import DecodedImage, ImageSource, decode_rgb
from moths_framework.preprocessing import Preprocessing

__all__ = [
    "RESAMPLING",
    "CentreCrop",
    "CentreCropRule",
    "CropResize",
    "Region",
    "centre_crop",
    "center_crop_box",
    "cut_region",
    "decode_region",
    "eval_region",
    "reduction",
    "resized_size",
]

# Pillow's filter for each interpolation name (torchvision's InterpolationMode values,
# mapped as its pil_modes_mapping does).
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
_SCALES = (8, 4, 2, 1)  # libjpeg's reductions, largest first

Box = tuple[float, float, float, float]


class Region(Protocol):
    """Where a model input comes from, decided on an image's full size."""

    def reduction_limit(self, width: int, height: int) -> float:
        """The largest reduction of a ``width`` x ``height`` image that loses no output pixel."""
        ...

    def cut(self, decoded: DecodedImage, resample: int) -> Image.Image:
        """The region's pixels, resized, from ``decoded`` (at whatever scale it was decoded)."""
        ...


@dataclass(frozen=True)
class CentreCrop:
    """Resize the whole image to ``resized`` (width, height), then cut ``box`` of that.

    Evaluation's geometry (torchvision's ``Resize`` then ``CenterCrop``).
    """

    resized: tuple[int, int]
    box: tuple[int, int, int, int]

    def reduction_limit(self, width: int, height: int) -> float:
        return min(width / self.resized[0], height / self.resized[1])

    def cut(self, decoded: DecodedImage, resample: int) -> Image.Image:
        image, content = decoded.image, _content(decoded)
        whole = (0.0, 0.0, float(image.width), float(image.height))
        if content != whole:  # a reduced JPEG: resize exactly the full image's extent
            image = image.resize(self.resized, resample, box=content)
        elif self.resized != image.size:
            image = image.resize(self.resized, resample)
        return image.crop(self.box)


@dataclass(frozen=True)
class CropResize:
    """Cut ``box`` (left, top, right, bottom, in full-size pixels), resize it to ``size``.

    Training's random resized crop (torchvision's ``RandomResizedCrop``: crop, then resize).
    """

    box: tuple[int, int, int, int]
    size: tuple[int, int]

    def reduction_limit(self, width: int, height: int) -> float:
        left, top, right, bottom = self.box
        return min((right - left) / self.size[0], (bottom - top) / self.size[1])

    def cut(self, decoded: DecodedImage, resample: int) -> Image.Image:
        image, (left, top, right, bottom) = decoded.image, _content(decoded)
        full_width, full_height = decoded.full_size
        sx, sy = (right - left) / full_width, (bottom - top) / full_height
        x0, y0, x1, y1 = self.box
        box = (left + x0 * sx, top + y0 * sy, left + x1 * sx, top + y1 * sy)
        # Crop first, as torchvision does: the filter then stops at the crop's edges.
        hull = (
            max(math.floor(box[0]), 0),
            max(math.floor(box[1]), 0),
            min(math.ceil(box[2]), image.width),
            min(math.ceil(box[3]), image.height),
        )
        cropped = image.crop(hull)
        if hull == box:  # full scale: exactly torchvision's crop + resize
            return cropped.resize(self.size, resample)
        inner = (
            max(box[0] - hull[0], 0.0),
            max(box[1] - hull[1], 0.0),
            min(box[2] - hull[0], cropped.width),
            min(box[3] - hull[1], cropped.height),
        )
        return cropped.resize(self.size, resample, box=inner)


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


def centre_crop(width: int, height: int, shorter_side: int, crop: tuple[int, int]) -> CentreCrop:
    """The :class:`CentreCrop` of a ``width`` x ``height`` image: shorter side resized to
    ``shorter_side``, then the centre ``crop`` (height, width) cut out."""
    resized = resized_size(width, height, shorter_side)
    return CentreCrop(resized, center_crop_box(*resized, crop[0], crop[1]))


@dataclass(frozen=True)
class CentreCropRule:
    """:func:`centre_crop` as a function of the full size (picklable, for loader workers)."""

    shorter_side: int
    crop: tuple[int, int]

    def __call__(self, width: int, height: int) -> CentreCrop:
        return centre_crop(width, height, self.shorter_side, self.crop)


def eval_region(p: Preprocessing) -> CentreCropRule:
    """The evaluation region of a model's preprocessing, as a function of the full size."""
    return CentreCropRule(p.resize_size, p.input_size)


def reduction(limit: float) -> int:
    """The largest of libjpeg's reductions 1, 2, 4 and 8 that is at most ``limit``."""
    return next((scale for scale in _SCALES if scale <= limit), 1)


def decode_region(
    source: ImageSource,
    region: Callable[[int, int], Region],
    resample: int,
    *,
    fast: bool = True,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode ``source`` and return the pixels of its region, resized: the model's input image.

    Args:
        source: a path, an image file's bytes, or a PIL image (see
            :func:`moths_framework.images.decode_rgb`; EXIF orientation is applied first).
        region: the region, from the full width and height (EXIF orientation applied).
            Called once; for a JPEG before its pixels are decoded.
        resample: Pillow's resampling filter (see :data:`RESAMPLING`).
        fast: decode a JPEG file at the smallest reduced scale at which the region still
            has at least the output's pixels in both directions.
        max_pixels: refuse larger images, as :func:`~moths_framework.images.decode_rgb` does.

    Raises:
        ImageDecodeError: as :func:`~moths_framework.images.decode_rgb`.
    """
    chosen: list[Region] = []

    def draft_size(width: int, height: int) -> tuple[int, int] | None:
        chosen.append(region(width, height))
        scale = reduction(chosen[0].reduction_limit(width, height))
        return (width // scale, height // scale) if scale > 1 else None

    decoded = decode_rgb(source, draft_size=draft_size if fast else None, max_pixels=max_pixels)
    return (chosen[0] if chosen else region(*decoded.full_size)).cut(decoded, resample)


def cut_region(image: Image.Image, region: Region, resample: int) -> Image.Image:
    """The region of an RGB image already decoded at full size (a crop of a frame, say)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return region.cut(DecodedImage(image, image.size, None), resample)


def _content(decoded: DecodedImage) -> Box:
    if decoded.content_box is not None:
        return decoded.content_box
    return 0.0, 0.0, float(decoded.image.width), float(decoded.image.height)
