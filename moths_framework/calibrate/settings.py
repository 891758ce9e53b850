"""What a (calibrated) checkpoint tells inference: temperatures, thresholds, roll-up, novelty.

``moths-predict`` must answer exactly as ``moths-infer`` does on the checkpoint's
export. Both read the checkpoint's calibration through
:class:`~moths_framework.inference.metadata.ModelMetadata`, made by the one
:meth:`~moths_framework.model.checkpoint_meta.CheckpointMeta.model_metadata`:
``moths-export`` writes it into the ONNX file, :func:`inference_settings` reads
it here, so the thresholds, roll-up method and novelty detector cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.rollup import check_rollup_method
from moths_framework.model.checkpoint import CheckpointError, CheckpointMeta

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


def inference_settings(meta: CheckpointMeta) -> InferenceSettings:
    """The settings ``OnnxClassifier`` would read from this checkpoint's ONNX export.

    Args:
        meta: the checkpoint's metadata (``checkpoint_meta``, ``read_weights``).

    Raises:
        CheckpointError: the checkpoint's calibration or novelty statistics are unreadable.
    """
    try:
        metadata = meta.model_metadata()
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
