"""A detector's checkpoint: its spec, classes, preprocessing, postprocessing and weights.

The same two file kinds as a classifier's (:mod:`moths_framework.model.checkpoint`),
read under the same trust rules:

- a ``.ckpt``: ``{"state_dict": ..., "moths": {...}, "epoch": ...}`` saved by
  ``torch.save``; the detection model's weights are under ``model.`` (what a
  LightningModule keeping it as ``self.model`` saves) and the ``moths`` block is
  :meth:`DetectorCheckpointMeta.to_dict`, whose ``task`` is ``detection``;
- a ``.safetensors``: the same weights, the same block as JSON in its header.

``moths-export`` tells a detector's checkpoint from a classifier's by that
``task`` (:func:`checkpoint_task`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moths_framework import __version__
from moths_framework.atomic_files import replaced_atomically
from moths_framework.inference.detector_metadata import DETECTION, DetectorMetadata
from moths_framework.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEY,
    CheckpointError,
    StateDict,
    load_safetensors,
    read_checkpoint,
    save_safetensors,
)
from moths_framework.model.detector import WEIGHT_SOURCES, Detector
from moths_framework.model.trust import checked_plugin_class
from moths_framework.preprocessing import DetectorPreprocessing

__all__ = [
    "STATE_PREFIX",
    "DetectorCheckpointMeta",
    "checkpoint_task",
    "copy_as_safetensors",
    "detector_from_spec",
    "detector_from_weights",
    "load_detector",
    "read_detector_checkpoint",
    "write_detector_checkpoint",
]

STATE_PREFIX = "model."  # the detection model's weights in the checkpoint's state_dict
_REQUIRED = ("detector", "classes", "preprocessing")
_VAL_EXAMPLES = "val_examples"  # validation frame paths: they name someone's disk


@dataclass(frozen=True)
class DetectorCheckpointMeta:
    """Everything a detector's checkpoint carries besides its weights.

    Attributes:
        detector: the detector's spec, ``{"class_path": ..., "init_args": {...}}``.
        classes: the N class names; model label ``k`` (1..N) is ``classes[k - 1]``.
        preprocessing: what the model does to a frame inside.
        score_threshold: the default score cut (export writes it to the ONNX file);
            it wins over the spec's own, so a threshold tuned after training sticks.
        nms_iou: the NMS IoU the exported graph applies.
        max_detections: the most boxes the exported graph returns per frame.
        framework_version: the moths-framework version that wrote it.
        metrics: validation metrics when it was saved.
        data: the data's summary; ``val_examples`` (frame paths) are the parity
            frames ``moths-export`` uses by default.
        format: the metadata's format version.
        extra: keys this version does not know, kept on a round trip.
    """

    detector: dict[str, Any]
    classes: tuple[str, ...]
    preprocessing: DetectorPreprocessing
    score_threshold: float = 0.5
    nms_iou: float = 0.5
    max_detections: int = 500
    framework_version: str | None = __version__
    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    format: int = CHECKPOINT_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        self.model_metadata()  # the same checks as the exported file's (raises ValueError)

    @classmethod
    def of(cls, detector: Detector, classes: list[str] | tuple[str, ...], **kwargs: Any):
        """The metadata of a model ``detector`` built for ``classes``."""
        return cls(
            detector.spec(), tuple(classes), detector.preprocessing,
            **{**detector.postprocess(), **kwargs},
        )  # fmt: skip

    @property
    def val_examples(self) -> list[str]:
        """Validation frames the run recorded (the default parity frames of export)."""
        return [str(p) for p in self.data.get(_VAL_EXAMPLES) or []]

    def model_metadata(self, model_card: dict[str, Any] | None = None) -> DetectorMetadata:
        """The :class:`DetectorMetadata` an ONNX export of this checkpoint carries."""
        return DetectorMetadata(
            self.classes, self.preprocessing, self.score_threshold, self.nms_iou,
            self.max_detections, dict(model_card or {}),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The plain form stored under :data:`CHECKPOINT_KEY`."""
        stored = {
            "task": DETECTION,
            "format": self.format,
            "detector": self.detector,
            "classes": list(self.classes),
            "preprocessing": self.preprocessing.to_json(),
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "max_detections": self.max_detections,
            "framework_version": self.framework_version,
            "metrics": dict(self.metrics),
            "data": dict(self.data),
        }
        return {**self.extra, **stored}

    @classmethod
    def from_dict(cls, stored: object, source: object = "checkpoint") -> DetectorCheckpointMeta:
        """Read the form :meth:`to_dict` writes.

        Raises:
            CheckpointError: one line: not a detector's block, a key missing, a value unreadable.
        """
        if not isinstance(stored, dict):
            raise CheckpointError(f"{source}: its '{CHECKPOINT_KEY}' entry is not a dictionary")
        if stored.get("task") != DETECTION:
            raise CheckpointError(
                f"{source} is not a detector's checkpoint ('{CHECKPOINT_KEY}.task' is "
                f"{stored.get('task', 'absent: a classifier')!r})"
            )
        missing = [key for key in _REQUIRED if key not in stored]
        if missing:
            raise CheckpointError(
                f"{source}: its detector block '{CHECKPOINT_KEY}' has no {', '.join(missing)}"
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            values = {k: stored[k] for k in known if k in stored}
            values["preprocessing"] = DetectorPreprocessing.from_json(stored["preprocessing"])
            extra = {k: v for k, v in stored.items() if k not in known and k != "task"}
            return cls(**values, extra=extra)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{source}: unreadable detector metadata: {err}") from err


def write_detector_checkpoint(
    path: str | Path, model: nn.Module, meta: DetectorCheckpointMeta, epoch: int | None = None
) -> Path:
    """Write ``model``'s weights and ``meta`` as a ``.ckpt`` or ``.safetensors``, atomically.

    A ``.safetensors`` leaves out the validation frame paths (they name someone's disk).
    """
    path = Path(path)
    state = {f"{STATE_PREFIX}{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        return save_safetensors(state, _without_frame_paths(meta), path)
    if path.suffix != ".ckpt":
        raise CheckpointError(f"{path}: a detector checkpoint is a .ckpt or a .safetensors file")
    with replaced_atomically(path) as temporary:
        torch.save({"state_dict": state, CHECKPOINT_KEY: meta.to_dict(), "epoch": epoch}, temporary)
    return path


def copy_as_safetensors(path: str | Path, out: str | Path) -> Path:
    """A detector's ``.ckpt`` or ``.safetensors`` written to ``out`` as a ``.safetensors``
    (a zoo checkpoint: no pickle, no validation frame paths), whatever ``out``'s name.

    Raises:
        CheckpointError: ``path`` is missing, unreadable or not a detector's checkpoint.
    """
    state, stored, _ = _read(path)
    return save_safetensors(
        state, _without_frame_paths(DetectorCheckpointMeta.from_dict(stored, path)), out
    )


def _without_frame_paths(meta: DetectorCheckpointMeta) -> dict[str, Any]:
    """``meta`` as stored in a ``.safetensors``: without the validation frames' paths."""
    data = {k: v for k, v in meta.data.items() if k != _VAL_EXAMPLES}
    return dataclasses.replace(meta, data=data).to_dict()


def _read(path: str | Path) -> tuple[StateDict, dict[str, Any], int | None]:
    """The raw state dict, moths block and epoch of either file kind."""
    if Path(path).suffix == ".safetensors":
        tensors, stored = load_safetensors(path)
        return tensors, stored, None
    checkpoint = read_checkpoint(path)
    return checkpoint.get("state_dict") or {}, checkpoint[CHECKPOINT_KEY], checkpoint.get("epoch")


def checkpoint_task(path: str | Path) -> str:
    """``detection`` or ``classification``: what the checkpoint at ``path`` holds.

    Raises:
        CheckpointError: the file is missing, unreadable or not a moths checkpoint.
    """
    stored = _read(path)[1]
    task = stored.get("task", "classification") if isinstance(stored, dict) else None
    return task if isinstance(task, str) else "classification"


def read_detector_checkpoint(
    path: str | Path,
) -> tuple[StateDict, DetectorCheckpointMeta, int | None]:
    """The detection model's weights (without :data:`STATE_PREFIX`), metadata and epoch.

    Raises:
        CheckpointError: missing, unreadable, or not a detector's checkpoint.
    """
    state, stored, epoch = _read(path)
    meta = DetectorCheckpointMeta.from_dict(stored, path)
    weights = {k[len(STATE_PREFIX) :]: v for k, v in state.items() if k.startswith(STATE_PREFIX)}
    return weights, meta, epoch


def detector_from_spec(spec: object) -> Detector:
    """The :class:`Detector` a spec names (a registered detector plugin or a ``Detector``
    subclass, unless checkpoints are trusted), asked for no weights: the checkpoint has them.

    Raises:
        CheckpointError: the spec is not a dict, names a class it may not build, or the
            class rejects its ``init_args``.
    """
    if not isinstance(spec, dict):
        raise CheckpointError(f"the checkpoint's detector spec {spec!r} is not a dictionary")
    hint = "pip install moths-plugin-torchvision"
    cls = checked_plugin_class(spec.get("class_path"), "detectors", "detector", hint)
    init_args = dict(spec.get("init_args") or {})
    init_args.update({k: v for k, v in WEIGHT_SOURCES.items() if k in init_args})
    try:
        return cls(**init_args)
    except Exception as err:  # a plugin's constructor may raise anything for a bad spec
        raise CheckpointError(
            f"cannot rebuild the detector {spec.get('class_path')}: {type(err).__name__}: {err}"
        ) from err


def load_detector(path: str | Path) -> tuple[Detector, nn.Module, DetectorCheckpointMeta]:
    """The detector, its trained model (eval mode, CPU) and the metadata of a checkpoint.

    Raises:
        CheckpointError: unreadable, not a detector's, or weights that do not fit.
    """
    weights, meta, _ = read_detector_checkpoint(path)
    return (*detector_from_weights(weights, meta, path), meta)


def detector_from_weights(
    weights: StateDict, meta: DetectorCheckpointMeta, source: object = "checkpoint"
) -> tuple[Detector, nn.Module]:
    """The detector ``meta`` names and its model (eval mode) holding ``weights``.

    Raises:
        CheckpointError: the detector may not be built, or the weights do not fit.
    """
    detector = detector_from_spec(meta.detector)
    model = detector.build(len(meta.classes))
    expected = model.state_dict().keys()
    missing = sorted(expected - weights.keys())
    unexpected = sorted(weights.keys() - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit {meta.detector.get('class_path')} for {len(meta.classes)} "
            f"classes: {len(missing)} weights missing, {len(unexpected)} unexpected "
            f"(e.g. {(missing or unexpected)[0]})"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # shapes
        raise CheckpointError(f"{source} does not fit its detector: {err}") from err
    return detector, model.eval()
