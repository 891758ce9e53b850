"""Static int8 quantisation of an exported float32 model (``moths-export --int8``).

ONNX Runtime's quantiser, as its CPU guide recommends: ``quant_pre_process``
(shape inference + graph optimisation), then ``quantize_static`` in QDQ format
with per-channel int8 weights and uint8 activations (the u8s8 kernels that
AVX-512 VNNI and AMX run), calibrated with min/max ranges over real images.

Before quantising, a spatial mean (``ReduceMean`` over H and W, keeping dims:
the squeeze-and-excitation blocks of EfficientNet and friends) becomes the
equivalent ``GlobalAveragePool``: ONNX Runtime has an int8 kernel for that one,
so the activation stays uint8 instead of being dequantised for a float mean
(measured: int8 ``efficientnet_b0`` about 1.2x faster, model only, one thread).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from moths_framework.export import ExportError, inputs_noun
from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.inference.metadata import INPUT_NAME
from moths_framework.inference.prediction import softmax
from moths_framework.inference.preprocess import preprocess
from moths_framework.preprocessing import Preprocessing

__all__ = [
    "REQUIRED_AGREEMENT",
    "Int8Report",
    "calibration_inputs",
    "check_int8_agreement",
    "quantize_int8",
]

log = logging.getLogger(__name__)

REQUIRED_AGREEMENT = 0.99  # top-1 agreement with float32, at every rank
_CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Int8Report:
    """How the int8 model compares with its float32 original (both on ONNX Runtime CPU)."""

    images: int
    source: str  # "images" or "random"
    calibration_images: int
    top1_agreement: dict[str, float]
    max_abs_prob_diff: dict[str, float]

    def __str__(self) -> str:
        return (
            f"int8 vs fp32 on {self.images} {inputs_noun(self.source)}: "
            f"top-1 agreement {min(self.top1_agreement.values()):.1%} (worst rank), "
            f"max |Δprob| {max(self.max_abs_prob_diff.values()):.2e}; "
            f"calibrated on {self.calibration_images} images"
        )


def calibration_inputs(paths: Sequence[str | Path], p: Preprocessing, count: int) -> np.ndarray:
    """The first ``count`` of ``paths`` that decode, preprocessed as inference does.

    Raises:
        ExportError: not one of ``paths`` could be read.
    """
    arrays = []
    for path in paths:
        if len(arrays) == count:
            break
        try:
            arrays.append(preprocess(open_rgb(path), p))
        except (ImageDecodeError, OSError):
            continue
    if not arrays:
        raise ExportError(
            f"int8 needs calibration images, and none of {len(paths)} could be read "
            "(the checkpoint's validation images moved?); pass --calibration DIR"
        )
    if len(arrays) < count:
        log.warning("int8: calibrating on %d images (%d asked for)", len(arrays), count)
    return np.stack(arrays)


class _Batches(CalibrationDataReader):
    """ONNX Runtime's calibration reader over preprocessed images, in small batches."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = (
            inputs[i : i + _CALIBRATION_BATCH] for i in range(0, len(inputs), _CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def _spatial_means_as_global_pools(proto: onnx.ModelProto) -> int:
    """Turn ``ReduceMean(axes=[2, 3], keepdims=1)`` on NCHW tensors into ``GlobalAveragePool``."""
    rewritten = 0
    for node in proto.graph.node:
        if node.op_type != "ReduceMean" or len(node.input) != 1:  # axes as an input: leave it
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if sorted(attrs.get("axes", [])) == [2, 3] and attrs.get("keepdims", 1) == 1:
            node.op_type = "GlobalAveragePool"
            del node.attribute[:]
            rewritten += 1
    return rewritten


def quantize_int8(fp32: Path, output: Path, calibration: np.ndarray) -> onnx.ModelProto:
    """Quantise the float32 model ``fp32`` to int8 (QDQ), write it to ``output``, return it.

    Metadata props are not carried over: the caller sets them on the result.
    """
    with tempfile.TemporaryDirectory(prefix="moths-int8-", dir=output.parent) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        proto = onnx.load(str(prepared))
        if _spatial_means_as_global_pools(proto):
            onnx.save(proto, str(prepared))
        quantize_static(
            str(prepared),
            str(output),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # No CalibMaxIntermediateOutputs: in onnxruntime 1.32 reaching it discards the
            # ranges collected so far. Min/max calibration keeps two small reductions per
            # tensor and batch, so memory stays small without it.
        )
    return onnx.load(str(output))


def check_int8_agreement(
    fp32: Path,
    int8: Path,
    inputs: tuple[np.ndarray, str],
    ranks: Sequence[str],
    calibration_images: int,
) -> Int8Report:
    """Compare the int8 model's top-1 and probabilities per rank with the float32 model's.

    Raises:
        ExportError: a non-finite output, or top-1 agreement below
            :data:`REQUIRED_AGREEMENT` at any rank.
    """
    batch, source = inputs
    expected, got = (_run(path, batch, ranks) for path in (fp32, int8))
    broken = [rank for rank in ranks if not np.isfinite(got[rank]).all()]
    if broken:
        raise ExportError(
            f"the int8 model gives non-finite values (inf/NaN) at {', '.join(broken)}; "
            "nothing written"
        )
    agree = {r: float((expected[r].argmax(1) == got[r].argmax(1)).mean()) for r in ranks}
    diff = {r: float(np.abs(softmax(expected[r]) - softmax(got[r])).max()) for r in ranks}
    report = Int8Report(len(batch), source, calibration_images, agree, diff)
    below = [rank for rank in ranks if agree[rank] < REQUIRED_AGREEMENT]
    if below:
        raise ExportError(
            f"int8 changes the top-1 too often: {report} (below {REQUIRED_AGREEMENT:.0%} at "
            f"{', '.join(below)}); nothing written: export fp32 or fp16 instead"
        )
    return report


def _run(path: Path, batch: np.ndarray, ranks: Sequence[str]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(ranks, session.run(list(ranks), {INPUT_NAME: batch}), strict=True))
