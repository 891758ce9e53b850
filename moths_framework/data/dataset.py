"""Torch dataset over labelled samples; broken images are skipped, not fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch.utils.data import Dataset, default_collate

from moths_framework.data.sources import Sample
from moths_framework.data.transforms import FileTransform
from moths_framework.images import ImageDecodeError

__all__ = [
    "Batch",
    "DecodeFailure",
    "IndexedBatch",
    "SampleDataset",
    "collate_skipping_broken",
    "collate_with_indices",
]

log = logging.getLogger(__name__)

# (images [N, 3, H, W], targets [N, ranks], number of images skipped in this batch)
Batch = tuple[torch.Tensor, torch.Tensor, int]


class DecodeFailure(NamedTuple):
    """An item of an indexed dataset whose image could not be read."""

    index: int
    error: str


class IndexedBatch(NamedTuple):
    """A batch that accounts for every item it was given (prediction needs each row).

    Attributes:
        images: the decoded images, ``[K, 3, H, W]``.
        targets: their class index per rank, ``[K, ranks]``.
        indices: dataset index of each decoded image, ``[K]``.
        failures: (dataset index, error message) of each image that was not read.
    """

    images: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    failures: list[tuple[int, str]]


class SampleDataset(Dataset):
    """Decodes ``samples[i]`` and returns (image tensor, class index per rank).

    ``transform`` runs as a :class:`~moths_framework.data.transforms.FileTransform`:
    its first step, a random resized crop or a resize and centre crop, is done while
    decoding (a JPEG at reduced scale when ``fast_decode``), as inference decodes.
    An image that fails to decode yields ``None``; :func:`collate_skipping_broken`
    drops it and counts it, so one bad file never stops a long training run.
    With ``with_index=True`` an item is (image, targets, i), or a
    :class:`DecodeFailure`, for :func:`collate_with_indices`.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        targets: Sequence[Sequence[int]],
        transform: Callable,
        with_index: bool = False,
        fast_decode: bool = True,
    ) -> None:
        self.samples = samples
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        if not isinstance(transform, FileTransform):
            transform = FileTransform(transform, fast_decode)
        self.transform = transform
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple | DecodeFailure | None:
        try:
            image = self.transform(self.samples[i].path)
        except ImageDecodeError as err:
            log.warning("skipping an image that does not decode: %s", err)
            return DecodeFailure(i, str(err)) if self.with_index else None
        item = (image, self.targets[i])
        return (*item, i) if self.with_index else item


def collate_skipping_broken(items: list[tuple[torch.Tensor, torch.Tensor] | None]) -> Batch:
    """Stack the decodable items; count the rest."""
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images, targets = default_collate(good)
    return images, targets, skipped


def collate_with_indices(
    items: list[tuple[torch.Tensor, torch.Tensor, int] | DecodeFailure],
) -> IndexedBatch:
    """Stack the decoded items of a ``with_index`` dataset; list the failures by index."""
    failures = [(item.index, item.error) for item in items if isinstance(item, DecodeFailure)]
    good = [item for item in items if not isinstance(item, DecodeFailure)]
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return IndexedBatch(torch.empty(0), empty, empty, failures)
    images, targets, indices = default_collate(good)
    return IndexedBatch(images, targets, indices, failures)
