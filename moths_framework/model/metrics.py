"""Metrics per phase and rank, with readable names like ``val/species/f1_macro``."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

__all__ = ["rank_metrics"]


def _collection(rank: str, n: int, phase: str, full: bool) -> MetricCollection:
    metrics: dict[str, nn.Module] = {"accuracy": MulticlassAccuracy(n, average="micro")}
    if full:
        metrics |= {
            "precision_macro": MulticlassPrecision(n, average="macro"),
            "recall_macro": MulticlassRecall(n, average="macro"),
            "f1_macro": MulticlassF1Score(n, average="macro"),
        }
        if rank == "species" and n > 5:
            metrics["top5_accuracy"] = MulticlassAccuracy(n, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=f"{phase}/{rank}/")


def rank_metrics(num_classes: Mapping[str, int]) -> nn.ModuleDict:
    """``metrics[f"{phase}_{rank}"]`` collections; training tracks accuracy only (it is cheap)."""
    return nn.ModuleDict(
        {
            f"{phase}_{rank}": _collection(rank, n, phase, full=phase != "train")
            for phase in ("train", "val", "test")
            for rank, n in num_classes.items()
        }
    )
