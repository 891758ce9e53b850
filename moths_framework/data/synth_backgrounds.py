"""Backgrounds for synthetic trap frames: photos of an empty sheet, or a generated one.

A generated sheet looks like a light trap at night: an off-white cloth lit by a lamp
(a bright spot fading to the corners), folds (slow shading), weave (fine texture)
and sensor noise. Every draw comes from the caller's generator, so a seed gives the
same sheet. No torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from moths_framework.data.sources import has_image_suffix
from moths_framework.images import ImageDecodeError, open_rgb

__all__ = ["BackgroundError", "background_files", "generated_sheet", "photo_background"]


class BackgroundError(ValueError):
    """A backgrounds folder that gives no background; the message is one line."""


def generated_sheet(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A lit sheet of ``width`` x ``height`` pixels, different for every draw of ``rng``."""
    colour = np.array([232.0, 228.0, 214.0]) + rng.normal(0.0, 6.0, 3)
    level = rng.uniform(0.75, 1.0)
    # the lamp: brightest near the top middle, falling off with distance
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(-0.1, 0.4) * height
    distance = np.hypot((xs - cx) / width, (ys - cy) / height)
    light = 1.0 - rng.uniform(0.2, 0.45) * np.minimum(distance, 1.2) ** 1.5
    # folds: a coarse random field, smoothly upsampled
    coarse = rng.normal(0.0, 1.0, (6, 8)).astype(np.float32)
    folds = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    light = light * (1.0 + rng.uniform(0.015, 0.04) * folds)
    # weave: faint threads along both axes
    period = rng.uniform(3.0, 6.0)
    weave = 1.2 * (np.sin(2 * np.pi * xs / period) + np.sin(2 * np.pi * ys / period))
    pixels = (colour * level).astype(np.float32) * light[..., None] + weave[..., None]
    pixels += _tiled_noise(width, height, rng)

    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _tiled_noise(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: a random 256-pixel tile repeated (its period does not show; drawing
    every pixel would take longer than all the rest of a 4K sheet)."""
    tile = rng.normal(0.0, 2.5, (256, 256, 3)).astype(np.float32)
    reps = (-(-height // 256), -(-width // 256), 1)
    return np.tile(tile, reps)[:height, :width]


def background_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (hidden files left out), sorted by name.

    Raises:
        BackgroundError: ``folder`` is no folder or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BackgroundError(f"backgrounds folder {folder} does not exist or is no folder")
    with os.scandir(folder) as entries:
        files = sorted(
            Path(e.path)
            for e in entries
            if not e.name.startswith(".") and has_image_suffix(e.name) and e.is_file()
        )
    if not files:
        raise BackgroundError(f"backgrounds folder {folder} holds no image (.jpg, .png, ...)")
    return files


def photo_background(
    files: Sequence[Path], width: int, height: int, rng: np.random.Generator
) -> Image.Image:
    """One of ``files``, scaled to cover ``width`` x ``height``, a random part of it cut
    out and flipped at random. Files that do not decode are passed over.

    Raises:
        BackgroundError: no file decodes.
    """
    order = rng.permutation(len(files))
    for index in order:
        try:
            photo = _decoded(files[index], width, height)
        except ImageDecodeError:
            continue
        scale = max(width / photo.width, height / photo.height)
        size = (max(width, round(photo.width * scale)), max(height, round(photo.height * scale)))
        if size != photo.size:
            photo = photo.resize(size, Image.Resampling.BILINEAR)
        x = int(rng.integers(0, size[0] - width + 1))
        y = int(rng.integers(0, size[1] - height + 1))
        photo = photo.crop((x, y, x + width, y + height))
        if rng.random() < 0.5:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return photo
    raise BackgroundError(f"no background decodes: {len(files)} files tried, e.g. {files[0]}")


@lru_cache(maxsize=8)
def _decoded(path: Path, width: int, height: int) -> Image.Image:
    return open_rgb(path, draft_size=(width, height))
