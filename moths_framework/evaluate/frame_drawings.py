"""A trap frame with its true and predicted boxes drawn on it, as PNG bytes (Pillow).

The frame is decoded as the model saw it (:func:`moths_framework.images.open_rgb`:
EXIF orientation applied, so the boxes land where they belong) and scaled to
:data:`MAX_SIDE` on its longer side, small frames up, so that boxes a few pixels
wide can be seen. A frame that cannot be opened from here is drawn as a grey
canvas of its size, with the boxes and a note. No torch.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from moths_framework.images import ImageDecodeError, open_rgb

__all__ = ["MAX_SIDE", "PREDICTED_COLOUR", "TRUE_COLOUR", "frame_png"]

MAX_SIDE = 720
# Okabe-Ito bluish green and vermillion: told apart with the common colour blindnesses.
TRUE_COLOUR = (0, 158, 115)
PREDICTED_COLOUR = (213, 94, 0)
_LEGEND_HEIGHT = 22


def frame_png(
    path: str,
    size: tuple[int, int],
    true_boxes: np.ndarray,
    predicted_boxes: np.ndarray,
    predicted_label: str = "predicted",
) -> bytes:
    """``path`` (displayed size ``size``) with ``true_boxes`` and ``predicted_boxes``
    (``x1 y1 x2 y2`` in frame pixels) outlined in two colours, under a legend strip."""
    width, height = max(int(size[0]), 1), max(int(size[1]), 1)
    scale = MAX_SIDE / max(width, height)
    shown = (max(round(width * scale), 1), max(round(height * scale), 1))
    frame, note = _frame(path, shown)
    canvas = Image.new("RGB", (shown[0], shown[1] + _LEGEND_HEIGHT), (255, 255, 255))
    canvas.paste(frame, (0, _LEGEND_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(max(shown) / 300))
    for boxes, colour in ((true_boxes, TRUE_COLOUR), (predicted_boxes, PREDICTED_COLOUR)):
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale:
            y1, y2 = y1 + _LEGEND_HEIGHT, y2 + _LEGEND_HEIGHT
            draw.rectangle((x1, y1, max(x2, x1), max(y2, y1)), outline=colour, width=line)
    _legend(draw, len(true_boxes), len(predicted_boxes), predicted_label, note)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _frame(path: str, shown: tuple[int, int]) -> tuple[Image.Image, str]:
    """The frame at ``shown`` size, or a grey canvas and why."""
    try:
        image = open_rgb(path, draft_size=shown)
    except (ImageDecodeError, OSError) as error:
        reason = getattr(error, "reason", None) or "not found"
        return Image.new("RGB", shown, (200, 200, 200)), f"frame {reason}: blank canvas"
    return image.resize(shown, Image.Resampling.BILINEAR), ""


def _legend(draw: ImageDraw.ImageDraw, true: int, predicted: int, label: str, note: str) -> None:
    font = ImageFont.load_default(size=13)
    x = 6
    keys = ((TRUE_COLOUR, f"true ({true})"), (PREDICTED_COLOUR, f"{label} ({predicted})"))
    for colour, text in keys:
        draw.rectangle((x, 5, x + 12, 17), outline=colour, width=3)
        draw.text((x + 17, 4), text, fill=(0, 0, 0), font=font)
        x += 17 + int(draw.textlength(text, font=font)) + 14
    if note:
        draw.text((x, 4), note, fill=(120, 0, 0), font=font)
