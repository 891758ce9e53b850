"""A detector → one self-describing ONNX file, checked for parity with PyTorch.

The graph (the contract of :mod:`moths_framework.inference.detector_metadata`):
``images`` float32 ``[1, 3, H, W]`` in [0, 1], any ``H`` and ``W``, in;
``boxes`` ``[K, 4]`` (xyxy, the input's pixels), ``scores`` ``[K]`` and
``labels`` int64 ``[K]`` out: :class:`~moths_framework.model.detection_graph.DetectionGraph`,
which resizes the frame per the preprocessing, runs the model (which normalises
inside) and maps its boxes back. It is traced with the TorchScript exporter at
opset 17 (``dynamo=False``: torchvision's detection models are tested for export
that way), with NMS and ``max_detections`` inside and no score cut, which the
reader applies; multi-level RoI pooling merges its levels with a ``Gather``
(:mod:`~moths_framework.export.roi_merge`), not torchvision's slow scatter.
"""

from __future__ import annotations

import copy
import datetime
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from moths_framework import __version__
from moths_framework.atomic_files import replaced_atomically
from moths_framework.export import ExportError
from moths_framework.export.detector_parity import (
    PARITY_FRAMES,
    DetectorParityReport,
    check_detector_parity,
    frames_for_parity,
    synthetic_frames,
)
from moths_framework.export.onnx import EXPORTER, OPSET, save_checked
from moths_framework.export.roi_merge import gathered_roi_levels
from moths_framework.inference.detector_metadata import (
    BOXES_OUTPUT,
    DETECTOR_INPUT,
    LABELS_OUTPUT,
    SCORES_OUTPUT,
    DetectorMetadata,
)
from moths_framework.messages import one_line
from moths_framework.model.checkpoint import CheckpointError
from moths_framework.model.detection_graph import DetectionGraph
from moths_framework.model.detector import Detector
from moths_framework.model.detector_checkpoint import (
    DetectorCheckpointMeta,
    detector_from_weights,
    read_detector_checkpoint,
)
from moths_framework.output_folders import check_may_overwrite, record_written

__all__ = [
    "DetectorExportResult",
    "export_detector_checkpoint",
    "export_detector_onnx",
    "trace_detector",
]

_OUTPUTS = (BOXES_OUTPUT, SCORES_OUTPUT, LABELS_OUTPUT)


@dataclass(frozen=True)
class DetectorExportResult:
    path: Path
    parity: DetectorParityReport
    size_bytes: int


def trace_detector(graph: DetectionGraph, path: str | Path, frame: torch.Tensor) -> None:
    """Export ``graph`` (its model's postprocessing as it should be in the file) to
    ``path``, tracing it on ``frame`` (``(3, H, W)``); height and width stay dynamic.

    Raises:
        ExportError: the exporter failed (one line).
    """
    graph = graph.eval()
    axes = {DETECTOR_INPUT: {2: "height", 3: "width"}}
    axes.update({name: {0: "detections"} for name in _OUTPUTS})
    try:
        # The tracer warns about every Python number the detection code reads from a
        # tensor (pages of text): the parity check, not the warnings, says if it worked.
        with warnings.catch_warnings(), gathered_roi_levels():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (frame[None],),
                str(path),
                input_names=[DETECTOR_INPUT],
                output_names=list(_OUTPUTS),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
    except Exception as err:  # the exporter raises many kinds, often with pages of text
        raise ExportError(
            f"torch.onnx.export could not export the detector: {one_line(err)}"
        ) from err


def export_detector_onnx(
    detector: Detector,
    model: nn.Module,
    classes: Sequence[str],
    output: str | Path,
    parity_frames: Sequence[str | Path | torch.Tensor] | None = None,
    *,
    score_threshold: float | None = None,
    nms_iou: float | None = None,
    max_detections: int | None = None,
    model_card: dict[str, Any] | None = None,
    parity_min_score: float | None = None,
    force: bool = False,
) -> DetectorExportResult:
    """Export a detection model built by ``detector``, check it, and write it atomically.

    Args:
        detector: the :class:`Detector` that built ``model`` (its preprocessing and
            postprocessing go into the file; ``model`` itself is not changed).
        model: the trained detection model, ``detector.build(len(classes))``.
        classes: the N class names, label ``k`` being ``classes[k - 1]``.
        output: the ``.onnx`` file to write.
        parity_frames: frames for the parity check: image paths (decoded with
            EXIF orientation) or ``(3, H, W)`` float tensors in [0, 1]; at most
            16 are used. Default: 16 synthetic frames of varied sizes.
        score_threshold, nms_iou, max_detections: override the detector's own.
        model_card: facts added to the file's model card.
        parity_min_score: parity compares the boxes scoring at least this; default:
            the score threshold (lower it for a detector that has not learned yet).
        force: overwrite an existing ``output`` that moths-export wrote.

    Raises:
        ExportError: the output exists without ``force``, the exporter or
            ``onnx.checker`` fails, or parity does not hold (nothing is written).
        OutputFolderError: with ``force``, the output is a file moths-export did not write.
    """
    given = dict(score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections)
    settings = {**detector.postprocess(), **{k: v for k, v in given.items() if v is not None}}
    card = {**_card(detector, classes), **(model_card or {})}
    metadata = DetectorMetadata(tuple(classes), detector.preprocessing, **settings, model_card=card)
    output = Path(output)
    if os.path.lexists(output):
        if not force:
            raise ExportError(f"{output} exists; pass --force to overwrite it")
        check_may_overwrite(output.parent, [output.name], EXPORTER)
    inner = copy.deepcopy(model).eval()  # the caller's model keeps its own postprocessing
    nms, most = settings["nms_iou"], settings["max_detections"]
    detector.set_postprocess(inner, score_threshold=0.0, nms_iou=nms, max_detections=most)
    graph = DetectionGraph(inner, detector.preprocessing)
    output.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(output) as tmp:
        trace_detector(graph, tmp, next(synthetic_frames(detector.preprocessing, 1)))
        save_checked(onnx.load(str(tmp)), metadata, tmp)
        frames = frames_for_parity(parity_frames, detector.preprocessing, PARITY_FRAMES)
        least = settings["score_threshold"] if parity_min_score is None else parity_min_score
        report = check_detector_parity(
            graph, tmp, frames, nms_iou=nms, max_detections=most, min_score=least
        )
    record_written(output.parent, [output.name], EXPORTER)
    return DetectorExportResult(output, report, output.stat().st_size)


def export_detector_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    *,
    images: Sequence[str | Path] | None = None,
    force: bool = False,
) -> DetectorExportResult:
    """``moths-export --onnx`` for a detector's checkpoint (see
    :mod:`moths_framework.model.detector_checkpoint`).

    Args:
        checkpoint: a detector's ``.ckpt`` or ``.safetensors``.
        output: the ``.onnx`` file to write.
        images: frames for the parity check; default: the validation frames the
            checkpoint recorded, else synthetic frames.
        force: overwrite an existing ``output`` that moths-export wrote.

    Raises:
        CheckpointError: the checkpoint cannot be read or its detector rebuilt.
        ExportError: as :func:`export_detector_onnx`.
    """
    detector, model, meta, epoch = _rebuild(checkpoint)
    frames = list(images) if images is not None else meta.val_examples
    return export_detector_onnx(
        detector,
        model,
        meta.classes,
        output,
        frames,
        score_threshold=meta.score_threshold,
        nms_iou=meta.nms_iou,
        max_detections=meta.max_detections,
        model_card=_checkpoint_card(meta, epoch),
        force=force,
    )


def _rebuild(checkpoint: str | Path) -> tuple[Detector, nn.Module, DetectorCheckpointMeta, Any]:
    """The checkpoint's detector, model, metadata and epoch; a detector that cannot be
    built is one ExportError line."""
    weights, meta, epoch = read_detector_checkpoint(checkpoint)
    try:
        return (*detector_from_weights(weights, meta, checkpoint), meta, epoch)
    except CheckpointError:
        raise
    except Exception as err:  # a plugin's build may raise anything for a bad spec
        raise ExportError(
            f"cannot rebuild the detector of {checkpoint} ({meta.detector.get('class_path')}): "
            f"{one_line(err)}; check the detector's init_args and its plugin's version"
        ) from err


def _card(detector: Detector, classes: Sequence[str]) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {
        "task": "detection",
        "detector": detector.spec(),
        "classes": len(classes),
        "precision": "fp32",
        "exported_with": __version__,
        "exported_at": now,
    }


def _checkpoint_card(meta: DetectorCheckpointMeta, epoch: int | None) -> dict[str, Any]:
    return {
        "detector": meta.detector,
        "training_data": {k: v for k, v in meta.data.items() if k != "val_examples"},
        "validation_metrics": meta.metrics,
        "epoch": epoch,
        "trained_with": meta.framework_version,
    }
