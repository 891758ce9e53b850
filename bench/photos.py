"""Synthetic camera-like JPEGs for the benchmarks: the entropy of a photo, made offline."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def camera_like_jpeg(
    seed: int,
    size: tuple[int, int] = (1600, 1200),
    shapes: int = 25,
    radius: tuple[int, int] = (20, 250),
    blur: float = 2.0,
    noise_sigma: float = 4.0,
) -> bytes:
    """A JPEG (quality 90) of smooth gradients, shapes, blur and luminance noise.

    The noise sets the file size and with it the decoding cost: sigma 4 gives
    about 360 KB at 1600x1200, sigma 2 about 190 KB.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.empty((height, width, 3), np.float32)
    for channel in range(3):
        a, b, phase = rng.uniform(-1, 1, 3)
        base[..., channel] = 128 + 60 * np.sin(6 * (a * x / width + b * y / height) + 3 * phase)
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(shapes):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(*radius)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([cx - r, cy - r, cx + r, cy + r], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(blur))
    noise = rng.normal(0, noise_sigma, (height, width, 1)).astype(np.int16)
    pixels = (np.asarray(image).astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()
