"""How large an image :mod:`moths_framework.images` agrees to decode, decided from its header.

Pillow's decompression-bomb limit holds for every caller; a caller's own
``max_pixels`` (``moths-serve --max-pixels``) is stricter. Both are checked on
the size the header declares, before any pixel is decoded. A JPEG can decode
at 1/2, 1/4 or 1/8 scale (``Image.draft``), so one over ``max_pixels`` is
decoded smaller rather than refused.
"""

from __future__ import annotations

from PIL import Image

__all__ = ["TooManyPixels", "draft_target", "refuse_bombs", "refuse_over"]

_SCALES = (2, 4, 8)  # the reduced scales of libjpeg's DCT


class TooManyPixels(ValueError):
    """An image over the caller's ``max_pixels`` (reason ``too-many-pixels``)."""


def refuse_bombs(width: int, height: int) -> None:
    """Raise ``DecompressionBombError`` over Pillow's ``MAX_IMAGE_PIXELS``.

    Between 1x and 2x the limit Pillow only warns; we reject there too. Checked
    here, not by turning the warning into an error: warning filters are
    process-wide and not thread-safe to change, and inference decodes in threads.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        raise Image.DecompressionBombError(f"{width}x{height} pixels, over the {limit} limit")


def draft_target(
    size: tuple[int, int], draft_size: tuple[int, int] | None, max_pixels: int | None
) -> tuple[int, int] | None:
    """The size to ask ``Image.draft`` for, or ``None`` for a full decode.

    The smaller of ``draft_size`` (the caller's wish, in the file's orientation)
    and the largest reduced scale that brings ``size`` under ``max_pixels``.
    ``Image.draft`` picks the smallest scale whose result still covers the request.
    """
    width, height = size
    targets = [draft_size] if draft_size is not None else []
    if max_pixels and width * height > max_pixels:
        fits = (s for s in _SCALES if -(-width // s) * -(-height // s) <= max_pixels)
        scale = next(fits, _SCALES[-1])  # still over at 1/8: refuse_over says so
        targets.append((max(1, width // scale), max(1, height // scale)))
    if not targets:
        return None
    return min(t[0] for t in targets), min(t[1] for t in targets)


def refuse_over(size: tuple[int, int], max_pixels: int | None, full: tuple[int, int]) -> None:
    """Raise :class:`TooManyPixels` if ``size`` (what would be decoded) is over ``max_pixels``.

    ``full`` is the size the header declares, for the message.
    """
    width, height = size
    if max_pixels and width * height > max_pixels:
        scaled = f" (still {width}x{height} at reduced scale)" if size != full else ""
        raise TooManyPixels(f"{full[0]}x{full[1]} pixels{scaled}, over the limit of {max_pixels}")
