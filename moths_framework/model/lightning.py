"""The LightningModule: multi-head classifier, weighted multi-rank loss, metrics, optimizer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from moths_framework import __version__
from moths_framework.data.dataset import IndexedBatch
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.backbone import Backbone
from moths_framework.model.checkpoint import CHECKPOINT_KEY, CheckpointMeta
from moths_framework.model.heads import MultiHeadClassifier
from moths_framework.model.metrics import rank_metrics
from moths_framework.model.predict import PredictBatchOutput
from moths_framework.model.warm_start import load_source, warm_start
from moths_framework.preprocessing import Preprocessing

__all__ = ["MothsClassifier", "normalised_loss_weights"]

log = logging.getLogger(__name__)


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3)


def normalised_loss_weights(weights: Sequence[float] | None, ranks: int) -> torch.Tensor:
    """Rank loss weights scaled to sum to the number of ranks (the seed's rule)."""
    w = torch.ones(ranks) if weights is None else torch.as_tensor(weights, dtype=torch.float)
    if w.shape != (ranks,) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"loss_weights needs {ranks} non-negative values, got {weights}")
    return w * ranks / w.sum()


class MothsClassifier(pl.LightningModule):
    """Species classifier with one head per rank of the label hierarchy.

    The loss is the weighted mean of the per-rank losses. Backbone parameters
    sit in their own optimizer parameter group at ``lr × backbone_lr_ratio``;
    which of them train at an epoch is up to the unfreeze policy.

    Args:
        backbone: a backbone plugin, e.g. ``class_path: TimmBackbone``.
        hierarchy: the label hierarchy (linked from the data module by the CLI).
        loss: per-rank loss, e.g. ``torch.nn.CrossEntropyLoss`` with ``label_smoothing``.
        loss_weights: one weight per rank (head order); normalised to sum to the
            number of ranks. Default: equal.
        optimizer: the optimizer, given the parameter groups.
        lr_scheduler: optional LR scheduler, stepped per ``lr_scheduler_interval``.
        lr_scheduler_interval: ``epoch`` or ``step``.
        lr: when set (e.g. by the learning-rate finder), overrides the optimizer's lr.
        backbone_lr_ratio: backbone learning rate relative to the heads'.
        dropout: dropout on the features before the heads.
        preprocessing: evaluation preprocessing; default: the backbone's own.
        init_from: warm start: a ``.ckpt``, a ``.safetensors`` zoo checkpoint or
            ``zoo:ID[@VERSION]``; loads its backbone and the head rows of every class
            whose name this hierarchy also has (see :mod:`moths_framework.model.warm_start`).
    """

    def __init__(
        self,
        backbone: Backbone,
        hierarchy: LabelHierarchy | None = None,
        loss: nn.Module | None = None,
        loss_weights: list[float] | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: str = "epoch",
        lr: float | None = None,
        backbone_lr_ratio: float = 1.0,
        dropout: float = 0.0,
        preprocessing: Preprocessing | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if hierarchy is None:
            raise ValueError("MothsClassifier needs the label hierarchy (the data module's)")
        self.hierarchy = hierarchy
        self.preprocessing = preprocessing or backbone.preprocessing
        self.net = MultiHeadClassifier(backbone, hierarchy.num_classes(), dropout)
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        weights = normalised_loss_weights(loss_weights, len(hierarchy.ranks))
        self.register_buffer("loss_weights", weights, persistent=False)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.lr = lr
        self.backbone_lr_ratio = backbone_lr_ratio
        self.metrics = rank_metrics(hierarchy.num_classes())
        self.skipped_images: dict[str, int] = {}  # per phase, until its epoch ends
        if init_from:
            merged = warm_start(self.state_dict(), hierarchy, load_source(init_from), init_from)
            self.load_state_dict(merged, strict=False)

    @property
    def backbone(self) -> Backbone:
        return self.net.backbone

    @property
    def ranks(self) -> tuple[str, ...]:
        return self.hierarchy.ranks

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)

    def rank_losses(self, logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Loss per rank, shape ``[ranks]``."""
        return torch.stack([self.loss_fn(out, targets[:, i]) for i, out in enumerate(logits)])

    def _step(self, batch: Any, phase: str) -> torch.Tensor:
        """Loss of a batch; logs the loss and updates the phase's metrics.

        A batch whose images all failed to decode still returns a loss and logs
        the same keys: under DDP every rank must take the same collective steps
        (gradient all-reduce, metric sync), so a rank never sits one out. That
        loss is zero and reaches every trainable parameter, so each gets a zero
        gradient; it weighs nothing in the epoch's loss (batch size 0) and the
        metrics are not updated.
        """
        images, targets, skipped = batch
        self.skipped_images[phase] = self.skipped_images.get(phase, 0) + skipped
        logits = self(images) if len(images) else None
        if logits is None:
            loss = self._zero_loss()
        else:
            loss = (self.rank_losses(logits, targets) * self.loss_weights).mean()
        on_step = phase == "train"
        self.log(
            f"{phase}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(images),
            sync_dist=not on_step,
        )
        for i, rank in enumerate(self.ranks):
            collection = self.metrics[f"{phase}_{rank}"]
            if logits is not None:
                collection.update(logits[i], targets[:, i])
            self.log_dict(collection, on_step=False, on_epoch=True, batch_size=len(images))
        return loss

    def _zero_loss(self) -> torch.Tensor:
        """0, as a function of every trainable parameter (each gets a zero gradient)."""
        trainable = [p.sum() for p in self.parameters() if p.requires_grad]
        return torch.stack(trainable).sum() * 0.0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: IndexedBatch, batch_idx: int) -> PredictBatchOutput:
        """Logits per rank and features of a batch's decoded images, with their dataset
        indices and the images that could not be read (see ``model/predict.py``)."""
        images, _, indices, failures = batch
        if len(images) == 0:
            empty = images.new_zeros((0, self.backbone.num_features))
            logits = [images.new_zeros((0, n)) for n in self.hierarchy.num_classes().values()]
            return {"indices": indices, "logits": logits, "features": empty, "failures": failures}
        logits, features = self.net.forward_with_features(images)
        return {"indices": indices, "logits": logits, "features": features, "failures": failures}

    def _report_skipped(self, phase: str) -> None:
        # Logged on every rank, zero included: a key synced by some ranks only hangs DDP.
        skipped = self.skipped_images.pop(phase, 0)
        if skipped:
            log.warning("%s: skipped %d images that failed to decode", phase, skipped)
        self.log(f"{phase}/skipped_images", float(skipped), sync_dist=True, reduce_fx="sum")

    def on_train_epoch_end(self) -> None:
        self._report_skipped("train")

    def on_validation_epoch_end(self) -> None:
        self._report_skipped("val")

    def on_test_epoch_end(self) -> None:
        self._report_skipped("test")

    def configure_optimizers(self) -> Any:
        backbone = list(self.net.backbone.parameters())
        ids = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in ids]
        optimizer = self.optimizer_factory(
            [{"params": head, "name": "heads"}, {"params": backbone, "name": "backbone"}]
        )
        if self.lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        optimizer.param_groups[1]["lr"] *= self.backbone_lr_ratio
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.lr_scheduler_interval,
                "monitor": "val/loss",
            },
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = self.trainer.callback_metrics if self._trainer else {}
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        meta = CheckpointMeta(
            hierarchy=self.hierarchy,
            preprocessing=self.preprocessing,
            backbone=self.backbone.spec(),
            dropout=self.net.dropout.p,
            framework_version=__version__,
            metrics={k: float(v) for k, v in metrics.items() if k.startswith("val/")},
            data=datamodule.summary() if hasattr(datamodule, "summary") else {},
        )
        checkpoint[CHECKPOINT_KEY] = meta.to_dict()
