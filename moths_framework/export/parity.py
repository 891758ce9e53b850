"""Parity between an exported ONNX model and the PyTorch model it came from."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from moths_framework.data.transforms import eval_transform
from moths_framework.export import ExportError, inputs_noun
from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.inference.metadata import INPUT_NAME
from moths_framework.model.lightning import MothsClassifier
from moths_framework.preprocessing import Preprocessing

__all__ = ["ParityReport", "check_parity", "parity_images"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParityReport:
    """How close ONNX Runtime (CPU) is to PyTorch on the same inputs."""

    images: int
    source: str  # "images" or "random"
    max_abs_diff: dict[str, float]
    top1_agreement: dict[str, float]

    def __str__(self) -> str:
        worst = max(self.max_abs_diff.values())
        agree = min(self.top1_agreement.values())
        return (
            f"parity on {self.images} {inputs_noun(self.source)}: "
            f"max |Δlogit| {worst:.2e}, "
            f"top-1 agreement {agree:.1%} (worst rank)"
        )


def parity_images(
    paths: Sequence[str | Path], p: Preprocessing, limit: int = 32
) -> tuple[torch.Tensor, str]:
    """Preprocessed images for the check; random inputs when none decode."""
    transform = eval_transform(p)
    tensors = []
    for path in list(paths)[:limit]:
        try:
            tensors.append(transform(open_rgb(path)))
        except (ImageDecodeError, OSError):
            continue
    if tensors:
        return torch.stack(tensors), "images"
    log.warning("no example images could be read: checking parity on random inputs")
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, *p.input_size, generator=generator), "random"


def check_parity(
    model: MothsClassifier,
    onnx_path: str | Path,
    inputs: tuple[torch.Tensor, str],
    tolerance: float | None,
) -> ParityReport:
    """Compare the ONNX model's logits per rank with PyTorch's on the same inputs.

    Every output must be finite and every rank's top-1 must agree on every
    input; ``tolerance``, when given, also bounds max |Δlogit| (``None``: the
    difference is reported, not bounded, as for float16 weights).

    Raises:
        ExportError: a non-finite output, a top-1 that differs at any rank, or
            max |Δlogit| > ``tolerance``.
    """
    batch, source = inputs
    with torch.inference_mode():
        expected = [t.numpy() for t in model.eval()(batch)]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {INPUT_NAME: batch.numpy()}), strict=True))
    broken = [name for name, values in outputs.items() if not np.isfinite(values).all()]
    if broken:
        raise ExportError(
            f"the exported model gives non-finite values (inf/NaN) at {', '.join(broken)} "
            f"on {len(batch)} {inputs_noun(source)}; nothing written"
        )
    got = [outputs[rank] for rank in model.ranks]
    diff = {
        r: float(np.abs(e - g).max()) for r, e, g in zip(model.ranks, expected, got, strict=True)
    }
    agree = {
        r: float((e.argmax(1) == g.argmax(1)).mean())
        for r, e, g in zip(model.ranks, expected, got, strict=True)
    }
    report = ParityReport(len(batch), source, diff, agree)
    too_far = tolerance is not None and max(diff.values()) > tolerance
    differs = [rank for rank, share in agree.items() if share < 1.0]
    if too_far or differs:
        why = f"top-1 differs at {', '.join(differs)}" if differs else f"tolerance {tolerance}"
        raise ExportError(
            f"the exported model does not match PyTorch: {report} ({why}); nothing written"
        )
    return report
