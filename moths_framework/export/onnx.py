"""Checkpoint → one self-contained ONNX file, checked for parity with PyTorch.

The TorchScript exporter at opset 17 is used: the dynamo exporter has open
correctness bugs on CNNs (PyTorch #169178, #166797) and ignores dynamic batch
axes in some versions (#149065). The trace uses a batch of 2 so no size-1
batch gets baked into a reshape.
"""

from __future__ import annotations

import datetime
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from moths_framework import __version__
from moths_framework.atomic_files import replaced_atomically
from moths_framework.export import ExportError
from moths_framework.export.int8 import (
    Int8Report,
    calibration_inputs,
    check_int8_agreement,
    quantize_int8,
)
from moths_framework.export.parity import ParityReport, check_parity, parity_images
from moths_framework.inference.metadata import FEATURES_OUTPUT, INPUT_NAME, ModelMetadata
from moths_framework.messages import one_line
from moths_framework.model.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    checkpoint_meta,
    read_checkpoint,
)
from moths_framework.model.lightning import MothsClassifier
from moths_framework.model.rebuild import classifier_from_weights
from moths_framework.output_folders import check_may_overwrite, record_written

__all__ = ["ExportError", "ExportResult", "export_onnx", "save_checked"]

log = logging.getLogger(__name__)

OPSET = 17
PARITY_IMAGES = 32  # validation images checked when no --images are given
EXPORTER = "moths-export"  # the command an exported file is recorded as written by


@dataclass(frozen=True)
class ExportResult:
    path: Path
    parity: ParityReport  # the float32 graph against PyTorch
    size_bytes: int
    precision: str = "fp32"
    int8: Int8Report | None = None  # the int8 model against the float32 one


class _OnnxGraph(nn.Module):
    """The exported graph: normalised image → logits per rank (+ features)."""

    def __init__(self, model: MothsClassifier, features: bool) -> None:
        super().__init__()
        self.net = model.net
        self.features = features

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, features = self.net.forward_with_features(image)
        return (*logits, features) if self.features else tuple(logits)


def _model_card(meta: CheckpointMeta, epoch: int | None, precision: str) -> dict:
    return {
        "backbone": meta.backbone,
        "ranks": meta.hierarchy.num_classes(),
        "precision": precision,
        "training_data": meta.training_data,
        "validation_metrics": meta.metrics,
        "epoch": epoch,
        "trained_with": meta.framework_version,
        "exported_with": __version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _trace(model: MothsClassifier, features: bool, path: Path) -> None:
    graph = _OnnxGraph(model, features).eval()
    outputs = [*model.ranks, *([FEATURES_OUTPUT] if features else [])]
    h, w = model.preprocessing.input_size
    dummy = torch.randn(2, 3, h, w)
    torch.onnx.export(
        graph,
        (dummy,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *outputs]},
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )


def _separate_outputs(proto: onnx.ModelProto) -> None:
    """Give each graph output that other nodes also read an Identity node of its own.

    The float16 conversion casts outputs back to float32 in place, which would
    feed float32 features into float16 heads.
    """
    outputs = {o.name for o in proto.graph.output}
    consumed = {name for node in proto.graph.node for name in node.input} & outputs
    for name in consumed:
        internal = f"{name}_internal"
        for node in proto.graph.node:
            node.input[:] = [internal if i == name else i for i in node.input]
            node.output[:] = [internal if o == name else o for o in node.output]
        proto.graph.node.append(onnx.helper.make_node("Identity", [internal], [name]))


def _to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    from onnxconverter_common import float16

    _separate_outputs(proto)
    # The converter warns once per weight it clamps to float16's smallest value;
    # one summary line says the same.
    with warnings.catch_warnings(record=True) as clamped:
        warnings.simplefilter("always")
        # keep_io_types: callers still feed and read float32
        half = float16.convert_float_to_float16(proto, keep_io_types=True)
    if clamped:
        log.warning("fp16: %d tiny weights clamped to float16's smallest value", len(clamped))
    return half


def _class_path(meta: CheckpointMeta) -> str:
    spec = meta.backbone
    return str(spec.get("class_path", "unknown")) if isinstance(spec, dict) else "unknown"


def _rebuild(checkpoint: dict, meta: CheckpointMeta, source: str | Path) -> MothsClassifier:
    """The checkpoint's model; a backbone that cannot be rebuilt is one ExportError line."""
    try:
        return classifier_from_weights(checkpoint["state_dict"], meta)
    except CheckpointError:
        raise
    except Exception as err:  # a plugin's constructor may raise anything for a bad spec
        raise ExportError(
            f"cannot rebuild the model of {source} (backbone {_class_path(meta)}): "
            f"{one_line(err)}; check the backbone's init_args and its plugin's version"
        ) from err


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    *,
    fp16: bool = False,
    int8: bool = False,
    features: bool = True,
    force: bool = False,
    images: Sequence[str | Path] | None = None,
    calibration: Sequence[str | Path] | None = None,
    calibration_images: int = 256,
    tolerance: float = 1e-3,
) -> ExportResult:
    """Export a checkpoint to ONNX, check it, and write it atomically.

    Args:
        checkpoint: a ``best.ckpt``/``last.ckpt`` written by ``moths-fit``.
        output: the ``.onnx`` file to write.
        fp16: store weights in float16 (inputs and outputs stay float32); the
            parity check then requires finite outputs and the same top-1 at every
            rank, and reports max |Δlogit| without bounding it.
        int8: quantise statically to int8 (QDQ, per-channel weights) after the
            float32 graph passed its parity check; the int8 model must then agree
            with the float32 one on the top-1 of ≥ 99% of the parity images at
            every rank. Inputs and outputs stay float32.
        features: add the backbone feature vector as an output.
        force: overwrite an existing ``output`` that moths-export wrote (never
            a file it did not write).
        images: images for the parity check; default: validation images the
            checkpoint recorded (random inputs when none can be read).
        calibration: images for int8 calibration; default: the validation images
            the checkpoint recorded, those not used for the parity check first.
        calibration_images: how many of them calibrate int8.
        tolerance: largest allowed |Δlogit| against PyTorch (float32 export).

    Raises:
        ExportError: the output exists without ``force``, ``onnx.checker``
            rejects the model, parity does not hold, or int8 has no calibration
            images or changes the top-1 too often (then nothing is written).
        OutputFolderError: with ``force``, the output is a file moths-export did
            not write (see :mod:`moths_framework.output_folders`).
    """
    if fp16 and int8:
        raise ExportError("--fp16 and --int8 exclude each other; pick one")
    output = Path(output)
    if os.path.lexists(output):
        if not force:
            raise ExportError(f"{output} exists; pass --force to overwrite it")
        check_may_overwrite(output.parent, [output.name], EXPORTER)
    ckpt = read_checkpoint(checkpoint)
    meta = checkpoint_meta(ckpt, checkpoint)
    model = _rebuild(ckpt, meta, checkpoint)
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    # labels, preprocessing, card, and moths-calibrate's results
    metadata = meta.model_metadata(_model_card(meta, ckpt.get("epoch"), precision), precision)
    val = meta.val_examples
    parity_paths = [str(p) for p in images] if images is not None else val[:PARITY_IMAGES]
    output.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(output) as tmp:
        try:
            _trace(model, features, tmp)
        except Exception as err:  # the exporter raises many kinds, often with pages of text
            raise ExportError(
                f"torch.onnx.export could not export {checkpoint} "
                f"(backbone {_class_path(meta)}): {one_line(err)}"
            ) from err
        proto = onnx.load(str(tmp))
        if fp16:
            proto = _to_fp16(proto)
        save_checked(proto, metadata, tmp)
        batch = parity_images(parity_paths, model.preprocessing, limit=PARITY_IMAGES)
        report = check_parity(model, tmp, batch, tolerance=None if fp16 else tolerance)
        int8_report = None
        if int8:
            candidates = [str(p) for p in calibration] if calibration is not None else val
            int8_report = _quantize_checked(
                tmp, metadata, model, (batch[0].numpy(), batch[1]),
                _calibration_order(candidates, parity_paths), calibration_images,
            )  # fmt: skip
    record_written(output.parent, [output.name], EXPORTER)
    return ExportResult(output, report, output.stat().st_size, precision, int8_report)


def save_checked(proto: onnx.ModelProto, metadata: ModelMetadata | Any, path: Path) -> None:
    """Write ``proto`` with ``metadata`` (a classifier's or a detector's: anything with
    ``to_props()``) to ``path``; ``onnx.checker`` (full check) must pass."""
    onnx.helper.set_model_props(proto, metadata.to_props())
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"onnx.checker rejected the exported model: {err}") from err


def _calibration_order(candidates: Sequence[str], parity: Sequence[str]) -> list[str]:
    """Calibrate on images the parity check does not use, when there are any."""
    checked = set(parity)
    unseen = [p for p in candidates if p not in checked]
    return unseen + [p for p in candidates if p in checked]


def _quantize_checked(
    fp32: Path,
    metadata: ModelMetadata,
    model: MothsClassifier,
    parity: tuple,
    calibration: Sequence[str],
    count: int,
) -> Int8Report:
    """Replace the checked float32 model at ``fp32`` by its int8 version, if that agrees."""
    inputs = calibration_inputs(calibration, model.preprocessing, count)
    with replaced_atomically(fp32) as quantized:
        proto = quantize_int8(fp32, quantized, inputs)
        report = check_int8_agreement(fp32, quantized, parity, model.ranks, len(inputs))
        card = {**metadata.model_card, "int8": _int8_card(report)}
        save_checked(proto, replace(metadata, model_card=card), quantized)
    return report


def _int8_card(report: Int8Report) -> dict:
    return {
        "scheme": "static QDQ, per-channel int8 weights, uint8 activations (onnxruntime)",
        "calibration_images": report.calibration_images,
        "top1_agreement_with_fp32": report.top1_agreement,
        "max_abs_prob_diff": report.max_abs_prob_diff,
        "checked_on": f"{report.images} {report.source}",
    }
