"""The LightningModule of a detector: torchvision's losses to train, COCO mAP to validate.

``MothsDetector`` keeps the detection model its :class:`~moths_framework.model.detector.Detector`
builds as ``self.model``, so a checkpoint holds its weights under ``model.`` and, under
``moths``, the :class:`~moths_framework.model.detector_checkpoint.DetectorCheckpointMeta`
that ``moths-export --onnx`` and ``load_detector`` read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from moths_framework.data.frame_dataset import FrameBatch
from moths_framework.model.checkpoint import CHECKPOINT_KEY
from moths_framework.model.detector import Detector
from moths_framework.model.detector_checkpoint import DetectorCheckpointMeta

__all__ = ["EVAL_SCORE_CUT", "MAP_METRICS", "MothsDetector"]

log = logging.getLogger(__name__)
# COCOeval logs its 12-line summary at INFO on every validation; the metrics are logged.
logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)

# The model keeps every box scoring at least this when it validates, tests and predicts:
# mAP and a precision-recall curve need the low-scoring boxes too. The detector's own
# score_threshold (the cut a user gets) is what the checkpoint and an export record.
EVAL_SCORE_CUT = 0.001
# torchmetrics' names -> ours: mAP over IoU 0.5:0.95 (COCO's), at IoU 0.5 and 0.75.
MAP_METRICS = {"map": "map", "map_50": "map_50", "map_75": "map_75"}


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)


class MothsDetector(pl.LightningModule):
    """An object detector for trap frames, trained on :class:`~moths_framework.data.
    frame_datamodule.FrameDataModule`.

    The training loss is the sum of the detection model's losses (torchvision's:
    the proposals' objectness and boxes, the classifier's classes and boxes).
    Validation and test report COCO's mAP over IoU 0.5:0.95 (``val/map``), at IoU 0.5
    (``val/map_50``) and 0.75 (``val/map_75``), counting up to ``max_detections``
    boxes a frame, with every box scoring at least :data:`EVAL_SCORE_CUT`.

    Args:
        detector: a detector plugin, e.g. ``class_path: TorchvisionDetector``.
        classes: the class names, labels 1..N (linked from the data module by the CLI).
        optimizer: the optimizer, given the model's parameters.
        lr_scheduler: optional LR scheduler, stepped per ``lr_scheduler_interval``.
        lr_scheduler_interval: ``epoch`` or ``step``.
        lr: when set, overrides the optimizer's learning rate.
        batchnorm_momentum: the momentum of the running statistics of the model's
            BatchNorm layers (``None``: as built). torchvision's MobileNets track them
            at 0.01, made for long ImageNet runs: a detector trained from random
            weights for a few hundred steps then validates with statistics of weights
            long gone, and finds next to nothing. Frozen BatchNorm is not touched.
    """

    def __init__(
        self,
        detector: Detector,
        classes: Sequence[str] | None = None,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: str = "epoch",
        lr: float | None = None,
        batchnorm_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        if not classes:
            raise ValueError("MothsDetector needs the class names (the data module's)")
        self.detector = detector
        self.classes = tuple(str(c) for c in classes)
        self.model = detector.build(len(self.classes))
        detector.set_postprocess(
            self.model,
            score_threshold=EVAL_SCORE_CUT,
            nms_iou=detector.nms_iou,
            max_detections=detector.max_detections,
        )
        if batchnorm_momentum is not None:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = batchnorm_momentum
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.lr = lr
        # Not a ModuleDict: the metrics' states are no weights of the checkpoint.
        self._maps = {phase: self._new_map() for phase in ("val", "test")}
        self.skipped_frames: dict[str, int] = {}

    def _new_map(self) -> MeanAveragePrecision:
        max_detections = self.detector.max_detections
        return MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            max_detection_thresholds=[1, min(10, max_detections), max_detections],
            backend="faster_coco_eval",
        )

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Boxes, scores and labels of each frame (eval mode), in that frame's pixels."""
        return self.model(images)

    def training_step(self, batch: FrameBatch, batch_idx: int) -> torch.Tensor:
        images, targets, skipped = batch
        self._count_skipped("train", skipped)
        if not images:  # every frame failed: a zero loss that reaches every parameter
            loss = torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0
            losses = {}
        else:
            losses = self.model(images, _model_targets(targets))
            loss = torch.stack(list(losses.values())).sum()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=max(1, len(images)))  # fmt: skip
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True,
                     batch_size=len(images))  # fmt: skip
        return loss

    def validation_step(self, batch: FrameBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: FrameBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: FrameBatch, phase: str) -> None:
        images, targets, skipped = batch
        self._count_skipped(phase, skipped)
        if images:
            metric = self._maps[phase].to(self.device)
            metric.update(self.model(images), _model_targets(targets))

    def predict_step(self, batch: FrameBatch, batch_idx: int) -> dict[str, Any]:
        """Each decoded frame's ``image_id``, its size as the model got it (``(H, W)``)
        and its boxes, scores and labels in those pixels (on the CPU)."""
        images, targets, _ = batch
        found = self.model(images) if images else []
        return {
            "image_ids": [int(t["image_id"]) for t in targets],
            "sizes": [tuple(image.shape[-2:]) for image in images],
            "detections": [{k: v.detach().cpu() for k, v in d.items()} for d in found],
        }

    def _count_skipped(self, phase: str, skipped: int) -> None:
        self.skipped_frames[phase] = self.skipped_frames.get(phase, 0) + skipped

    def _end_epoch(self, phase: str) -> None:
        skipped = self.skipped_frames.pop(phase, 0)
        if skipped:
            log.warning("%s: skipped %d frames that failed to decode", phase, skipped)
        self.log(f"{phase}/skipped_frames", float(skipped), sync_dist=True, reduce_fx="sum")
        if phase not in self._maps:
            return
        metric = self._maps[phase]
        result = metric.compute()
        metric.reset()
        for theirs, ours in MAP_METRICS.items():
            self.log(f"{phase}/{ours}", float(result[theirs]), prog_bar=ours == "map_50")

    def on_train_epoch_end(self) -> None:
        self._end_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._end_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._end_epoch("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": self.lr_scheduler_interval,
                "monitor": "val/map",
            },
        }

    def checkpoint_meta(self) -> DetectorCheckpointMeta:
        """What a checkpoint of this model carries besides its weights."""
        trainer = self._trainer
        metrics = trainer.callback_metrics if trainer else {}
        datamodule = getattr(trainer, "datamodule", None) if trainer else None
        return DetectorCheckpointMeta.of(
            self.detector,
            self.classes,
            metrics={k: float(v) for k, v in metrics.items() if k.startswith("val/")},
            data=datamodule.summary() if hasattr(datamodule, "summary") else {},
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.checkpoint_meta().to_dict()


def _model_targets(targets: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
    """The boxes and labels of each target: what torchvision's models and metrics take."""
    return [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
