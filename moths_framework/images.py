"""The one place that decodes images: validation for prepare, RGB loading for everyone else.

Training, export checks and inference all call :func:`open_rgb`, so an image
looks the same to the model everywhere: EXIF orientation applied, transparency
composited on white, 16-bit samples scaled (not clipped) to 8 bits. A PIL image
already in memory goes through the same steps, so it looks like its file.
:func:`check_image` runs the very same decode, at JPEG draft scale, so a file
that ``moths-prepare`` keeps is a file that training can open.

Bytes are untrusted: only the formats of :data:`IMAGE_FORMATS` are tried (no
EPS reaching Ghostscript, no exotic plugin), and ``max_pixels`` refuses an image
from its header, before its pixels are decoded.

This module imports no torch: the inference side uses it on a box without it.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from moths_framework.image_limits import TooManyPixels, draft_target, refuse_bombs, refuse_over

__all__ = [
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "DecodedImage",
    "DraftSize",
    "ImageCheck",
    "ImageDecodeError",
    "ImageSource",
    "check_image",
    "decode_rgb",
    "open_rgb",
]

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image
# A JPEG's reduced decoding size: fixed, or a function of the image's full (width, height),
# EXIF orientation applied (a detector's working size depends on the frame's).
DraftSize = tuple[int, int] | Callable[[int, int], tuple[int, int]]

# The file suffixes (any case) that name an image: prepare, the data sources, moths-infer
# and moths-export all tell image files from other files by them.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

# The Pillow formats of IMAGE_SUFFIXES (a test keeps the two in step), the only
# ones Image.open tries, most common first: it tries them in order. A
# multi-picture .jpg (phone cameras) opens through JPEG's plugin, as MPO.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP")
_ORIENTATION = 0x0112  # EXIF tag
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_DRAFTABLE = {"JPEG", "MPO"}  # formats whose decoder can scale down while decoding
_WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}
_BACKGROUND = (255, 255, 255, 255)  # transparent pixels become white


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded.

    Attributes:
        source: the file name (or ``<bytes>``) the error is about.
        reason: a short stable word: ``empty``, ``not-an-image`` (also any
            format outside :data:`IMAGE_FORMATS`), ``truncated``,
            ``decompression-bomb``, ``too-many-pixels`` (over ``max_pixels``)
            or ``unreadable``.
    """

    def __init__(self, source: str, reason: str, detail: str = "") -> None:
        self.source = source
        self.reason = reason
        self.detail = detail
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"cannot decode image {source}: {reason}{suffix}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Keeps the error picklable across process pools (the default reduce
        # would call __init__ with the message only).
        return type(self), (self.source, self.reason, self.detail)


@dataclass(frozen=True)
class ImageCheck:
    """The outcome of :func:`check_image`.

    ``width``/``height`` are the full size of the image as :func:`open_rgb`
    returns it (EXIF orientation applied); 0 when the check failed.
    """

    ok: bool
    reason: str | None
    width: int
    height: int
    format: str | None


class DecodedImage(NamedTuple):
    """An RGB image, the size of its file (EXIF orientation applied) and its format.

    ``full_size`` differs from ``image.size`` when a JPEG was decoded at reduced scale.
    ``content_box`` is where the full image lies in ``image``'s pixels, ``(left, top,
    right, bottom)``: ``(0, 0, width, height)`` unless reduced. At 1/``s`` scale libjpeg
    rounds each side up to whole pixels, so the full image covers ``(0, 0, W/s, H/s)``
    of the file's reduced picture; an EXIF rotation or flip can move that spare part
    of a pixel to the left or top side.
    """

    image: Image.Image
    full_size: tuple[int, int]
    format: str | None
    content_box: tuple[float, float, float, float] | None = None


def open_rgb(
    source: ImageSource,
    *,
    draft_size: DraftSize | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode an image file completely into an RGB image.

    Args:
        source: a path, the bytes of an image file, or a PIL image (for example
            from ``Image.open``). A PIL image gets the same orientation, alpha
            and bit-depth handling as its file would, so both look the same to
            a model; it is loaded if it was not, and otherwise left unchanged.
        draft_size: if given and the file is a JPEG, decode at the smallest
            1/2, 1/4 or 1/8 scale whose width and height are still at least
            ``draft_size`` (after EXIF orientation). ``draft_size`` may be a
            function of the full ``(width, height)`` (after EXIF orientation)
            returning it. Other formats decode at full size, and so does a PIL
            image (drafting would change the caller's image).
        max_pixels: refuse an image of more pixels (``too-many-pixels``),
            counted from its header before anything is decoded. A JPEG over it
            first decodes at the largest 1/2, 1/4 or 1/8 scale that fits, so it
            is decoded smaller rather than refused.

    Returns:
        A loaded RGB image, independent of any open file. For a PIL image that
        needs no change this may be the image itself.

    Raises:
        ImageDecodeError: the file cannot be read or decoded (empty, not an
            image, truncated, a decompression bomb, corrupt). Truncated data
            raises unless the process set ``ImageFile.LOAD_TRUNCATED_IMAGES``;
            this function changes no process-wide setting, so threads may call it.
    """
    return decode_rgb(source, draft_size=draft_size, max_pixels=max_pixels).image


def decode_rgb(
    source: ImageSource,
    *,
    draft_size: DraftSize | None = None,
    max_pixels: int | None = None,
) -> DecodedImage:
    """:func:`open_rgb`, also returning the file's full size and format."""
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<image>"
        return _normalise(source, name, None, in_place=False, max_pixels=max_pixels)
    name, data = _read_source(source)
    return _decode(data, name, draft_size, max_pixels=max_pixels)


def check_image(data: bytes, name: str) -> ImageCheck:
    """Validate an image file held in memory by really decoding it.

    JPEGs decode at 1/8 scale and, for colour ones, luma only: libjpeg still
    parses every entropy-coded byte of every component, so truncated or corrupt
    data is caught at a fraction of the cost (colour conversion cannot fail on
    decoded data). Other formats decode fully. Truncated files are never
    padded: ``LOAD_TRUNCATED_IMAGES`` is switched off during the decode, whatever
    the process set. That switch is process-global, so call this from one thread
    at a time per process (``moths-prepare`` runs it in worker processes).

    Args:
        data: the file's bytes.
        name: the file name, used in messages.

    Returns:
        ``ok=True`` with the full size and format, or ``ok=False`` with a reason.
    """
    try:
        with _strict_decoding():
            decoded = _decode(data, name, draft_size=(1, 1), draft_mode="L")
    except ImageDecodeError as error:
        return ImageCheck(False, error.reason, 0, 0, None)
    width, height = decoded.full_size
    return ImageCheck(True, None, width, height, decoded.format)


def _read_source(source: ImageSource) -> tuple[str, bytes | bytearray | memoryview]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected a path or bytes, got {type(source).__name__}")
    name = os.fsdecode(source)
    try:
        with open(source, "rb") as file:
            return name, file.read()
    except OSError as error:
        raise ImageDecodeError(name, "unreadable", error.strerror or str(error)) from error


def _decode(
    data: bytes | bytearray | memoryview,
    name: str,
    draft_size: DraftSize | None,
    draft_mode: str = "RGB",
    max_pixels: int | None = None,
) -> DecodedImage:
    if len(data) == 0:
        raise ImageDecodeError(name, "empty")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Exception as error:
        raise _decode_error(name, error) from error
    return _normalise(
        image, name, draft_size, draft_mode=draft_mode, in_place=True, max_pixels=max_pixels
    )


def _normalise(
    image: Image.Image,
    name: str,
    draft_size: DraftSize | None,
    *,
    in_place: bool,
    draft_mode: str = "RGB",
    max_pixels: int | None = None,
) -> DecodedImage:
    """Load, orient and convert to RGB: the steps every image takes, file or not.

    ``in_place`` allows changing ``image`` itself (an image this module opened);
    a caller's image is only loaded, never drafted or transposed in place.
    """
    content = None
    try:
        fmt, (width, height) = image.format, image.size
        refuse_bombs(width, height)
        draftable = in_place and fmt in _DRAFTABLE
        if not draftable:  # now: a PNG's getexif() decodes the whole image
            refuse_over((width, height), max_pixels, (width, height))
        orientation = image.getexif().get(_ORIENTATION, 1)
        swapped = orientation in _SWAPS_AXES
        if draftable:
            if callable(draft_size):
                draft_size = draft_size(*((height, width) if swapped else (width, height)))
            if draft_size is not None and swapped:
                draft_size = (draft_size[1], draft_size[0])
            target = draft_target(image.size, draft_size, max_pixels)
            drafted = image.draft(draft_mode, target) if target is not None else None
            if drafted is not None and image.size != (width, height):
                content = _oriented_box(drafted[1], image.size, orientation)
            refuse_over(image.size, max_pixels, (width, height))  # drafted, not yet decoded
        image.load()
        if in_place:
            ImageOps.exif_transpose(image, in_place=True)
        elif orientation != 1:  # exif_transpose would copy even when nothing changes
            image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
    except Exception as error:  # Pillow's plugins raise many types on corrupt data
        raise _decode_error(name, error) from error
    full_size = (height, width) if swapped else (width, height)
    return DecodedImage(rgb, full_size, fmt, content or (0.0, 0.0, *map(float, rgb.size)))


# How exif_transpose moves a box, per EXIF orientation: flip x, flip y, and whether the
# axes swap first (transpose), as Pillow's Transpose methods for each orientation do.
_BOX_MOVES = {
    2: (False, True, False),
    3: (False, True, True),
    4: (False, False, True),
    5: (True, False, False),
    6: (True, True, False),
    7: (True, True, True),
    8: (True, False, True),
}


def _oriented_box(
    box: tuple[float, float, float, float], size: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """``box`` of an image of ``size`` (file orientation), after EXIF ``orientation``."""
    swap, flip_x, flip_y = _BOX_MOVES.get(orientation, (False, False, False))
    left, top, right, bottom = box
    width, height = size
    if swap:
        left, top, right, bottom, width, height = top, left, bottom, right, height, width
    if flip_x:
        left, right = width - right, width - left
    if flip_y:
        top, bottom = height - bottom, height - top
    return left, top, right, bottom


def _decode_error(name: str, error: Exception) -> ImageDecodeError:
    reason = _reason(error)
    # Pillow's "cannot identify image file <BytesIO ...>" adds nothing to the reason.
    detail = "" if reason == "not-an-image" else str(error)
    return ImageDecodeError(name, reason, detail)


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """No padding of truncated data, and no bomb warning printed (it is rejected anyway)."""
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def _reason(error: Exception) -> str:
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "decompression-bomb"
    if isinstance(error, TooManyPixels):
        return "too-many-pixels"
    if isinstance(error, UnidentifiedImageError):
        return "not-an-image"
    if isinstance(error, EOFError) or "truncated" in str(error).lower():
        return "truncated"
    return "unreadable"


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "F":
        return image.convert("L").convert("RGB")  # float samples are taken as 0..255
    if image.mode.startswith("I"):
        # 16-bit samples (I;16*, and I as Pillow opens 16-bit PNG/TIFF): scale to
        # 8 bits; convert("RGB") would clip at 255 and turn the image white.
        scaled = image.convert("I").point(lambda value: value * (1 / 256))
        return scaled.convert("L").convert("RGB")
    if image.mode in _WITH_ALPHA or "transparency" in image.info:
        if image.mode == "La":  # premultiplied grey: Pillow has no direct La->RGBA
            image = image.convert("LA")
        background = Image.new("RGBA", image.size, _BACKGROUND)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")
