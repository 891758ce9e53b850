"""Moth crops for synthetic frames: where they come from and drawing them at random.

No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from moths_framework.data.sources import DataSource, ImageFolder, Manifest, Sample
from moths_framework.images import ImageDecodeError, open_rgb

__all__ = ["CropError", "CropPool", "CropSources"]


class CropError(ValueError):
    """No crop to draw from; the message is one line."""


class CropSources(DataSource):
    """Crops from several places: each an image folder ``<species>/<image>`` (moths-prepare's
    ``image_folder``, or a source folder) or a ``manifest.csv``.

    Args:
        paths: the folders and manifests.
    """

    def __init__(self, paths: Sequence[str | Path]) -> None:
        if not paths:
            raise CropError("give at least one crop folder (<species>/<image>) or manifest.csv")
        self.paths = [Path(p) for p in paths]

    def samples(self) -> list[Sample]:
        return [
            sample
            for path in self.paths
            for sample in (Manifest(path) if path.suffix == ".csv" else ImageFolder(path)).samples()
        ]


class CropPool:
    """Moth crops to draw from: a data source's samples; crops that do not decode are
    passed over (and counted in :attr:`broken`).

    Args:
        source: e.g. ``ImageFolder`` over moths-prepare's ``image_folder``.
    """

    def __init__(self, source: DataSource) -> None:
        self.samples: list[Sample] = source.samples()
        if not self.samples:
            raise CropError(f"no crops in {source!r}: expected <folder>/<species>/<image>")
        self.broken: set[int] = set()
        self._decode = lru_cache(maxsize=256)(self._decode_uncached)

    def draw(self, rng: np.random.Generator, longest: int) -> tuple[Sample, Image.Image]:
        """A random crop that decodes, at least ``longest`` pixels a side where the file
        is that large (a larger JPEG decodes at reduced scale: faster)."""
        while len(self.broken) < len(self.samples):
            index = int(rng.integers(len(self.samples)))
            if index in self.broken:
                continue
            try:
                return self.samples[index], self._decode(index, longest)
            except ImageDecodeError:
                self.broken.add(index)
        raise CropError(f"none of the {len(self.samples)} crops decodes")

    def _decode_uncached(self, index: int, longest: int) -> Image.Image:
        return open_rgb(self.samples[index].path, draft_size=(longest, longest))

    def species(self) -> list[str]:
        return sorted({s.species for s in self.samples})
