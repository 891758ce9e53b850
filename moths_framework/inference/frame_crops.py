"""A classifier's input cut straight from a box of a frame, resizing only what it keeps.

The evaluation geometry (:class:`~moths_framework.scaled_decode.CentreCrop`) resizes a
whole crop, then cuts its centre. For a box of a trap frame that resizes pixels that are
thrown away: a sliver box (say 20 x 1300 pixels) resized to a shorter side of 256
becomes a 256 x 16640 picture, 20 to 50 ms for 224 x 224 pixels kept.
:func:`cut_centre_crop` resizes one axis at a time, in the order Pillow's own resize of
the crop would take (each pass rounds to whole grey levels, so the order shows), and
along each axis:

- whole, as the crop's own resize does (same coefficients, same pixels), when the
  resized axis is at most twice what the centre crop keeps of it (the shorter side,
  and both sides of a squarish box);
- otherwise only the pixels the centre crop maps back to and the filter's reach
  around them (never past the box: the filter stops at the crop's edges, as it does on
  the crop), through Pillow's ``resize(box=...)``. The same filter taps at the same
  places, but Pillow takes a box as 32-bit floats, so where the exact value is a tie
  between two grey levels (enlarging by a ratio like 40 / 85) a pixel may fall on the
  other side, a grey level or two apart.

``nearest`` and ``box`` (whose weights jump from 0 to 1, so the last bit of a float
could move a pixel by tens of grey levels) and a crop larger than the resized image
(padding) take the whole crop's path. No torch import.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from PIL import Image

from moths_framework.images import DecodedImage
from moths_framework.scaled_decode import CentreCrop

__all__ = ["cut_centre_crop"]

Box = tuple[int, int, int, int]

# Half the width of Pillow's continuous resampling filters, in source pixels at scale 1
# (src/libImaging/Resample.c); a filter reads that far times the reduction, if any.
_SUPPORT = {
    Image.Resampling.BILINEAR: 1.0,
    Image.Resampling.HAMMING: 1.0,
    Image.Resampling.BICUBIC: 2.0,
    Image.Resampling.LANCZOS: 3.0,
}
_WHOLE_UP_TO = 2  # resize an axis whole when it is at most this times what is kept of it


def cut_centre_crop(image: Image.Image, box: Box, region: CentreCrop, resample: int) -> Image.Image:
    """``region.cut`` of ``image.crop(box)`` (``region`` decided on the box's size), from
    the pixels it keeps (see the module's notes).

    Args:
        image: an RGB image, a frame say.
        box: (left, top, right, bottom) in ``image``'s pixels, whole and within it.
        region: the centre crop of a ``box``-sized image.
        resample: Pillow's resampling filter.
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    support = _SUPPORT.get(resample)
    x0, y0, x1, y1 = region.box
    padded = min(x0, y0) < 0 or x1 > region.resized[0] or y1 > region.resized[1]
    if support is None or padded:
        crop = image.crop(box)
        return region.cut(DecodedImage(crop, crop.size, None), resample)
    across = _axis(x0, x1, width, region.resized[0], support)
    down = _axis(y0, y1, height, region.resized[1], support)
    piece = image.crop((left + across.first, top + down.first, left + across.last, top + down.last))
    if _vertical_first(width, height, *region.resized):
        return _along(_along(piece, down, 1, resample), across, 0, resample)
    return _along(_along(piece, across, 0, resample), down, 1, resample)


class _Axis(NamedTuple):
    """One axis of the cut: the source pixels ``[first, last)`` (from the box's edge) are
    resized to ``size`` pixels, from ``extent`` of them (``None``: all), then ``keep``
    of those is cut."""

    first: int
    last: int
    extent: tuple[float, float] | None
    size: int
    keep: tuple[int, int]


def _axis(start: int, end: int, length: int, resized: int, support: float) -> _Axis:
    """How to make the centre crop's ``[start, end)`` of a ``length`` axis resized to
    ``resized``."""
    if resized <= _WHOLE_UP_TO * (end - start):  # little to save: exactly the crop's resize
        return _Axis(0, length, None, resized, (start, end))
    scale = length / resized
    reach = support * max(scale, 1.0) + 1  # the filter's, and a pixel spare
    first = max(math.floor(start * scale - reach), 0)
    last = min(math.ceil(end * scale + reach), length)
    extent = (start * scale - first, end * scale - first)
    return _Axis(first, last, extent, end - start, (0, end - start))


def _along(image: Image.Image, axis: _Axis, dimension: int, resample: int) -> Image.Image:
    """``image`` resized along one dimension (0: x, 1: y) as ``axis`` says."""
    size, whole = list(image.size), [0.0, 0.0, float(image.width), float(image.height)]
    size[dimension] = axis.size
    if axis.extent is not None:
        whole[dimension], whole[dimension + 2] = axis.extent
    resized = image.resize(tuple(size), resample, tuple(whole))
    if axis.keep == (0, axis.size):
        return resized
    kept = [0, 0, resized.width, resized.height]
    kept[dimension], kept[dimension + 2] = axis.keep
    return resized.crop(tuple(kept))


def _vertical_first(width: int, height: int, out_width: int, out_height: int) -> bool:
    """Whether Pillow resizes a ``width`` x ``height`` image to ``out_width`` x ``out_height``
    vertical pass first. Pillow 13 does when the height shrinks by more than twice what
    the width does (``ImagingResampleInner``); earlier versions always go horizontal first."""
    shrink = height - out_height
    return _PILLOW_CAN_GO_VERTICAL_FIRST and shrink > 0 and shrink > 2 * (width - out_width)


def _pillow_can_go_vertical_first() -> bool:
    """This Pillow's pass order, seen on an 8 x 40 image shrunk to 6 x 4 (which Pillow 13
    resizes vertical pass first; the two orders differ in 8 of its 24 pixels)."""
    probe = Image.frombytes("L", (8, 40), bytes((i * 97 + 31) % 251 for i in range(320)))
    bicubic, size = Image.Resampling.BICUBIC, (6, 4)
    whole = probe.resize(size, bicubic).tobytes()
    vertical = probe.resize((8, 4), bicubic).resize(size, bicubic).tobytes()
    horizontal = probe.resize((6, 40), bicubic).resize(size, bicubic).tobytes()
    return whole == vertical != horizontal


_PILLOW_CAN_GO_VERTICAL_FIRST = _pillow_can_go_vertical_first()
