"""Run a checkpoint over a data split and gather per-sample outputs, in sample order.

``MothsClassifier.predict_step`` returns one :class:`PredictBatchOutput` per
batch of :func:`~moths_framework.data.dataset.collate_with_indices`;
:func:`gather_outputs` puts them back in dataset order, with a NaN row and an
error message for each image that could not be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch

__all__ = ["GatheredOutputs", "PredictBatchOutput", "gather_outputs"]


class PredictBatchOutput(TypedDict):
    """What ``predict_step`` returns for one batch."""

    indices: torch.Tensor  # dataset index of each decoded image
    logits: list[torch.Tensor]  # per rank, head order, [K, C]
    features: torch.Tensor  # [K, D]
    failures: list[tuple[int, str]]  # (dataset index, error) of images not read


@dataclass(frozen=True)
class GatheredOutputs:
    """Outputs of every item of a dataset, row ``i`` = dataset index ``i``.

    Attributes:
        logits: rank -> float32 ``[N, C]``; NaN rows for images not read.
        features: float32 ``[N, D]``; NaN rows for images not read.
        errors: ``None`` where the image was read, else why it was not.
    """

    logits: dict[str, np.ndarray]
    features: np.ndarray
    errors: list[str | None]


def gather_outputs(
    batches: Iterable[PredictBatchOutput],
    size: int,
    num_classes: dict[str, int],
    num_features: int,
) -> GatheredOutputs:
    """Place each batch's rows at their dataset indices.

    Args:
        batches: ``predict_step`` outputs, any order.
        size: number of items in the dataset.
        num_classes: classes per rank, in head order.
        num_features: length of the feature vector.

    Raises:
        ValueError: an item is missing from every batch (a limited predict loop).
    """
    logits = {r: np.full((size, n), np.nan, np.float32) for r, n in num_classes.items()}
    features = np.full((size, num_features), np.nan, np.float32)
    errors: list[str | None] = [None] * size
    seen = np.zeros(size, dtype=bool)
    for batch in batches:
        rows = batch["indices"].cpu().numpy()
        seen[rows] = True
        for rank, out in zip(num_classes, batch["logits"], strict=True):
            logits[rank][rows] = _numpy(out)
        if len(rows):
            features[rows] = _numpy(batch["features"])
        for index, error in batch["failures"]:
            errors[index] = error
            seen[index] = True
    _require_all(seen)
    return GatheredOutputs(logits, features, errors)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _require_all(seen: Sequence[bool] | np.ndarray) -> None:
    missing = np.flatnonzero(~np.asarray(seen))
    if len(missing):
        raise ValueError(
            f"{len(missing)} images were never predicted (first index {missing[0]}); "
            "do not limit the predict loop (trainer.limit_predict_batches)"
        )
