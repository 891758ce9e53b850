"""What a checkpoint carries besides its weights, typed: :class:`CheckpointMeta`.

``moths-fit`` stores it under the ``moths`` key of a Lightning ``.ckpt``
(:data:`CHECKPOINT_KEY`), ``moths-calibrate`` adds its results, and a zoo
checkpoint keeps it as JSON in its safetensors header. It mirrors
:class:`~moths_framework.inference.metadata.ModelMetadata`, what an exported ONNX
file carries, and :meth:`CheckpointMeta.model_metadata` turns one into the other.

No torch here: the dataclass is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.metadata import ModelMetadata
from moths_framework.preprocessing import Preprocessing

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_KEY", "CheckpointError", "CheckpointMeta"]

CHECKPOINT_KEY = "moths"  # the key of a Lightning checkpoint that holds the moths metadata
CHECKPOINT_FORMAT = 1
_REQUIRED = ("hierarchy", "preprocessing", "backbone")
# Written by moths-calibrate, always together; an uncalibrated checkpoint has none of them.
_CALIBRATION = ("temperature", "thresholds", "calibration", "novelty")
_VAL_EXAMPLES = "val_examples"  # validation image paths: they name someone's disk


class CheckpointError(ValueError):
    """A file is not a moths-framework checkpoint, or it cannot be read or rebuilt."""


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint carries besides its weights.

    Attributes:
        hierarchy: the classes of every head, in head order.
        preprocessing: how an RGB image becomes the model's input.
        backbone: the backbone's spec, ``{"class_path": ..., "init_args": {...}}``.
        dropout: dropout on the features before the heads.
        framework_version: the moths-framework version that trained it.
        metrics: the validation metrics when it was saved (``val/...``).
        data: the data module's summary (``source``, ``val_examples``, ...).
        temperature: per-rank softmax temperature (``moths-calibrate``; empty before).
        thresholds: per-rank roll-up thresholds (``moths-calibrate``).
        calibration: ``moths-calibrate``'s report (thresholds, roll-up, tau, ...).
        novelty: the novelty detector's JSON form, or ``None``.
        format: the metadata's format version.
        extra: keys this version does not know, kept so that reading and
            writing a checkpoint loses nothing.
    """

    hierarchy: LabelHierarchy
    preprocessing: Preprocessing
    backbone: dict[str, Any]
    dropout: float = 0.0
    framework_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    temperature: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    novelty: dict[str, Any] | None = None
    format: int = CHECKPOINT_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """Whether ``moths-calibrate`` wrote this checkpoint."""
        return bool(self.temperature or self.thresholds or self.calibration or self.novelty)

    @property
    def val_examples(self) -> list[str]:
        """The validation images the run recorded (the parity and int8 defaults of export)."""
        return [str(p) for p in self.data.get(_VAL_EXAMPLES) or []]

    @property
    def training_data(self) -> dict[str, Any]:
        """:attr:`data` less the validation image paths: what may leave the machine."""
        return {k: v for k, v in self.data.items() if k != _VAL_EXAMPLES}

    @property
    def tau_power(self) -> float | None:
        """The tau-normalisation power baked into the species head, or ``None``."""
        tau = self.calibration.get("tau")
        return tau.get("power") if isinstance(tau, dict) else None

    def model_metadata(
        self, model_card: dict[str, Any] | None = None, precision: str = "fp32"
    ) -> ModelMetadata:
        """The :class:`ModelMetadata` an ONNX export of this checkpoint carries.

        Raises:
            ValueError: the temperatures are not positive or name unknown ranks.
        """
        return ModelMetadata(
            self.hierarchy,
            self.preprocessing,
            dict(model_card or {}),
            dict(self.temperature),
            calibration=dict(self.calibration),
            novelty=self.novelty,
            precision=precision,
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain form stored under :data:`CHECKPOINT_KEY` (what ``moths-fit`` writes)."""
        stored: dict[str, Any] = {
            "format": self.format,
            "hierarchy": self.hierarchy.to_json(),
            "preprocessing": self.preprocessing.to_json(),
            "backbone": self.backbone,
            "dropout": self.dropout,
            "framework_version": self.framework_version,
            "metrics": dict(self.metrics),
            "data": dict(self.data),
        }
        if self.calibrated:
            stored.update({name: getattr(self, name) for name in _CALIBRATION})
        return {**self.extra, **stored}

    @classmethod
    def from_dict(cls, stored: object, source: object = "checkpoint") -> CheckpointMeta:
        """Read the form :meth:`to_dict` writes.

        Args:
            stored: the value under :data:`CHECKPOINT_KEY`.
            source: the file, named in the error.

        Raises:
            CheckpointError: one line: not a dict, a key missing, or a value unreadable.
        """
        if not isinstance(stored, dict):
            raise CheckpointError(f"{source}: its '{CHECKPOINT_KEY}' entry is not a dictionary")
        task = stored.get("task", "classification")
        if task != "classification":  # a detector's (moths_framework.model.detector_checkpoint)
            raise CheckpointError(
                f"{source} is a {task} checkpoint ('{CHECKPOINT_KEY}.task' is {task!r}), "
                "not a classifier's"
            )
        missing = [key for key in _REQUIRED if key not in stored]
        if missing:
            raise CheckpointError(
                f"{source} was not written by moths-fit ('{CHECKPOINT_KEY}' has no "
                f"{', '.join(missing)})"
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            return cls(
                hierarchy=LabelHierarchy.from_json(stored["hierarchy"]),
                preprocessing=Preprocessing.from_json(stored["preprocessing"]),
                backbone=stored["backbone"],
                dropout=stored.get("dropout", 0.0),
                framework_version=stored.get("framework_version"),
                metrics=dict(stored.get("metrics") or {}),
                data=dict(stored.get("data") or {}),
                temperature=dict(stored.get("temperature") or {}),
                thresholds=dict(stored.get("thresholds") or {}),
                calibration=dict(stored.get("calibration") or {}),
                novelty=stored.get("novelty"),
                format=stored.get("format", CHECKPOINT_FORMAT),
                extra={k: v for k, v in stored.items() if k not in known},
            )
        except (ValueError, TypeError, KeyError) as err:
            # json.JSONDecodeError and HierarchyError are ValueErrors too.
            raise CheckpointError(f"{source}: unreadable moths metadata: {err}") from err
