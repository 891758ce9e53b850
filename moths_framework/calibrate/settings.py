"""What a (calibrated) checkpoint tells inference: temperatures, thresholds, roll-up, novelty.

``moths-predict`` must answer exactly as ``moths-infer`` does on the checkpoint's
export. Both read the checkpoint's calibration through
:class:`~moths_framework.inference.metadata.ModelMetadata`: ``moths-export``
builds one to write the ONNX metadata, :func:`inference_settings` builds the
same one from the checkpoint, so the thresholds, roll-up method and novelty
detector cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.metadata import ModelMetadata
from moths_framework.inference.novelty import NoveltyDetector
from moths_framework.inference.rollup import check_rollup_method
from moths_framework.model.checkpoint import CheckpointError
from moths_framework.model.lightning import CHECKPOINT_KEY
from moths_framework.preprocessing import Preprocessing

__all__ = ["InferenceSettings", "inference_settings"]


@dataclass(frozen=True)
class InferenceSettings:
    """How ``moths-infer`` turns this model's outputs into answers.

    Attributes:
        temperature: rank -> softmax temperature (1.0 when not calibrated).
        thresholds: rank -> roll-up threshold chosen by ``moths-calibrate``
            (empty when not calibrated: every rank keeps the default).
        rollup: the calibrated roll-up method, or ``None`` (independent heads).
        novelty: the novelty detector, or ``None``.
    """

    temperature: dict[str, float]
    thresholds: dict[str, float]
    rollup: str | None
    novelty: NoveltyDetector | None


def inference_settings(
    checkpoint: dict[str, Any], hierarchy: LabelHierarchy, preprocessing: Preprocessing
) -> InferenceSettings:
    """The settings ``OnnxClassifier`` would read from this checkpoint's ONNX export.

    Args:
        checkpoint: the loaded checkpoint (``read_checkpoint``).
        hierarchy, preprocessing: the model's.

    Raises:
        CheckpointError: the checkpoint's calibration or novelty statistics are unreadable.
    """
    meta = checkpoint[CHECKPOINT_KEY]
    try:
        metadata = ModelMetadata(
            hierarchy,
            preprocessing,
            temperature=dict(meta.get("temperature") or {}),
            calibration=dict(meta.get("calibration") or {}),
            novelty=meta.get("novelty"),
        )
        novelty = NoveltyDetector.from_json(metadata.novelty) if metadata.novelty else None
        rollup = metadata.rollup_method
        if rollup is not None:
            check_rollup_method(rollup)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"unreadable calibration in the checkpoint: {error}") from None
    return InferenceSettings(
        dict(metadata.temperature),
        metadata.calibrated_thresholds,
        rollup,
        novelty,
    )
