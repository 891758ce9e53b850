"""Torch dataset over labelled samples; broken images are skipped, not fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset, default_collate

from moths_framework.data.sources import Sample
from moths_framework.images import ImageDecodeError, open_rgb

__all__ = ["Batch", "SampleDataset", "collate_skipping_broken"]

log = logging.getLogger(__name__)

# (images [N, 3, H, W], targets [N, ranks], number of images skipped in this batch)
Batch = tuple[torch.Tensor, torch.Tensor, int]


class SampleDataset(Dataset):
    """Decodes ``samples[i]`` and returns (image tensor, class index per rank).

    An image that fails to decode yields ``None``; :func:`collate_skipping_broken`
    drops it and counts it, so one bad file never stops a long training run.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        targets: Sequence[Sequence[int]],
        transform: Callable,
    ) -> None:
        self.samples = samples
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            image = open_rgb(self.samples[i].path)
        except ImageDecodeError as err:
            log.warning("skipping an image that does not decode: %s", err)
            return None
        return self.transform(image), self.targets[i]


def collate_skipping_broken(items: list[tuple[torch.Tensor, torch.Tensor] | None]) -> Batch:
    """Stack the decodable items; count the rest."""
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, targets = default_collate(good)
    return images, targets, skipped
