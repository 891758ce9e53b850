"""Per-channel pixel mean and standard deviation of a data source, exactly.

The statistics are those of the pixels the model sees at evaluation: each
image is decoded by :func:`moths_framework.images.open_rgb` and resized and
centre-cropped by :func:`moths_framework.inference.preprocess.resize_and_crop`.
Sums and sums of squares of the 8-bit values are kept as integers, so the
result is the exact mean and the exact total variance over every pixel (not a
mean of per-image variances, which leaves out the variance between images).
Images are processed in parallel, streamed: memory does not grow with the
number of images. No torch import.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.inference.preprocess import resize_and_crop
from moths_framework.preprocessing import Preprocessing

__all__ = ["PixelStats", "pixel_stats"]

_CHUNK = 32  # images per task: large enough to amortise the pool's messaging


@dataclass(frozen=True)
class PixelStats:
    """Channel statistics on the 0-1 scale.

    Attributes:
        images: images measured.
        pixels: pixels per channel measured.
        mean: per-channel (R, G, B) mean.
        std: per-channel population standard deviation over all pixels.
        failed: (path, reason) of the images that could not be decoded.
    """

    images: int
    pixels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Sums:
    images: int = 0
    pixels: int = 0
    total: list[int] = field(default_factory=lambda: [0, 0, 0])
    squares: list[int] = field(default_factory=lambda: [0, 0, 0])
    failed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: _Sums) -> None:
        self.images += other.images
        self.pixels += other.pixels
        self.total = [a + b for a, b in zip(self.total, other.total, strict=True)]
        self.squares = [a + b for a, b in zip(self.squares, other.squares, strict=True)]
        self.failed += other.failed


def pixel_stats(
    paths: Sequence[str | Path],
    preprocessing: Preprocessing,
    workers: int | None = None,
    progress: bool = True,
) -> PixelStats:
    """Mean and std per channel over every pixel of ``paths`` after the eval resize and crop.

    Args:
        paths: image files.
        preprocessing: gives the input size, ``crop_pct`` and interpolation
            (its mean and std are not used).
        workers: processes; default one per CPU, 1 computes in this process.
        progress: show a progress bar (on stderr).

    Raises:
        ValueError: no image could be decoded.
    """
    chunks = [list(map(str, paths[i : i + _CHUNK])) for i in range(0, len(paths), _CHUNK)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks) or 1))
    sums = _Sums()
    with tqdm(total=len(paths), unit="img", disable=not progress, desc="moths-stats") as bar:
        for part in _sums_of_chunks(chunks, preprocessing, workers):
            sums.add(part)
            bar.update(part.images + len(part.failed))
    if sums.images == 0:
        raise ValueError(f"none of the {len(paths)} images could be decoded")
    n = sums.pixels
    mean = tuple(t / n / 255 for t in sums.total)
    # Integer arithmetic up to the last division: n * sum(x^2) - sum(x)^2 is exact.
    variance = [(n * q - t * t) / (n * n) for t, q in zip(sums.total, sums.squares, strict=True)]
    std = tuple(float(np.sqrt(v)) / 255 for v in variance)
    return PixelStats(sums.images, n, mean, std, sums.failed)


def _sums_of_chunks(
    chunks: list[list[str]], preprocessing: Preprocessing, workers: int
) -> Iterator[_Sums]:
    if workers == 1:
        for chunk in chunks:
            yield _chunk_sums(chunk, preprocessing)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_chunk_sums, chunks, [preprocessing] * len(chunks))


def _chunk_sums(paths: list[str], preprocessing: Preprocessing) -> _Sums:
    sums = _Sums()
    for path in paths:
        try:
            image = resize_and_crop(open_rgb(path), preprocessing)
        except ImageDecodeError as error:
            sums.failed.append((path, error.reason))
            continue
        pixels = np.asarray(image, dtype=np.int64).reshape(-1, 3)
        sums.images += 1
        sums.pixels += len(pixels)
        sums.total = [a + int(b) for a, b in zip(sums.total, pixels.sum(axis=0), strict=True)]
        squares = np.einsum("ij,ij->j", pixels, pixels)
        sums.squares = [a + int(b) for a, b in zip(sums.squares, squares, strict=True)]
    return sums
