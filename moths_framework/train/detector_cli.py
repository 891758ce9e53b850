"""The LightningCLI of a detector: ``moths-fit``, ``moths-validate``, ``moths-test`` and
``moths-predict`` on a config that names ``model.detector`` and ``data.instances``.

The same commands, run folder, ``config.yaml``, ``split.csv`` (per frame), ``best.ckpt``
and ``last.ckpt`` as a classifier's (:class:`~moths_framework.train.cli.MothsCLI`),
with :class:`~moths_framework.model.detector_lightning.MothsDetector` on
:class:`~moths_framework.data.frame_datamodule.FrameDataModule`; ``best.ckpt`` is the
one with the highest validation mAP over IoU 0.5:0.95 (``val/map``). Given
``--ckpt_path``, the model is built for the checkpoint's classes and a ``pretrained``
detector downloads nothing: the checkpoint has the weights.
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.cli import LightningArgumentParser

from moths_framework.data.frame_datamodule import FrameDataModule
from moths_framework.inference.detector_metadata import DETECTION
from moths_framework.model.checkpoint import CHECKPOINT_KEY, CheckpointError, read_checkpoint
from moths_framework.model.detector import WEIGHT_SOURCES
from moths_framework.model.detector_checkpoint import DetectorCheckpointMeta
from moths_framework.model.detector_lightning import MothsDetector
from moths_framework.train.cli import MothsCLI, no_weight_sources
from moths_framework.train.task import ConfigTaskError

__all__ = ["DetectorCLI"]


class DetectorCLI(MothsCLI):
    """:class:`MothsCLI` for a detector: classes linked from the data, best by ``val/map``."""

    MODEL = MothsDetector
    DATA = FrameDataModule
    BEST_BY: tuple[str, Literal["min", "max"]] = ("val/map", "max")

    def __init__(self, command: str, args: list[str] | None) -> None:
        self.detector_meta: DetectorCheckpointMeta | None = None
        super().__init__(command, args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data", "model.classes", self._model_classes, apply_on="instantiate")
        self.add_run_arguments(parser)

    def _model_classes(self, data: FrameDataModule) -> tuple[str, ...]:
        """The model's classes: the checkpoint's when there is one, else the data's."""
        if self.detector_meta is not None:
            data.use_classes(self.detector_meta.classes)
        return data.classes

    def before_instantiate_classes(self) -> None:
        if self.command == "fit" and self.config.get("tune"):
            raise ConfigTaskError(
                "moths-fit --tune searches a classifier's batch size and learning rate; "
                "for a detector set model.lr (or the optimizer's lr) and data.batch_size"
            )
        if self.command == "predict" and self.config.get("images_by_prediction"):
            raise ConfigTaskError("--images-by-prediction is for classifiers: a detector's "
                                  "prediction folder lists boxes")  # fmt: skip
        ckpt = self.config.get("ckpt_path")
        if ckpt:
            self.checkpoint = read_checkpoint(ckpt)
            stored = self.checkpoint[CHECKPOINT_KEY]
            if isinstance(stored, dict) and stored.get("task") != DETECTION:
                raise CheckpointError(
                    f"{ckpt} is a classifier's checkpoint and the config a detector's: "
                    "give the config of its run (RUN/config.yaml names model.backbone)"
                )
            self.detector_meta = DetectorCheckpointMeta.from_dict(stored, ckpt)
        elif self.command == "predict":
            raise CheckpointError("moths-predict needs a trained model: --ckpt_path RUN/best.ckpt")
        self._set_run_dir()

    def instantiate_classes(self) -> None:
        if self.checkpoint is None:
            super(MothsCLI, self).instantiate_classes()
            return
        # The checkpoint supplies the weights: the detector must not download or read any.
        with no_weight_sources(self.config.model.detector.get("init_args"), WEIGHT_SOURCES):
            super(MothsCLI, self).instantiate_classes()
        _check_weights_fit(self.model, self.checkpoint, self.config.ckpt_path)


def _check_weights_fit(model: MothsDetector, checkpoint: dict[str, Any], path: str) -> None:
    """Raise :class:`CheckpointError` (one line) unless ``checkpoint`` loads into ``model``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in (checkpoint.get("state_dict") or {}).items()}
    if expected == found:
        return
    trained = checkpoint[CHECKPOINT_KEY].get("detector", {})
    configured = model.detector.spec()
    differs = [k for k in sorted(set(expected) | set(found)) if expected.get(k) != found.get(k)]
    raise CheckpointError(
        f"{path} does not fit the configured detector ({len(differs)} weights differ, e.g. "
        f"{differs[0]}): it was trained as {trained.get('class_path')} "
        f"{trained.get('init_args', {}).get('name', '')}, the config asks for "
        f"{configured['class_path']} {configured['init_args'].get('name', '')}: "
        "use the run's own config.yaml or the same model.detector"
    )
