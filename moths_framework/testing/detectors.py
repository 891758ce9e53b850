"""The detector contract: every clause of :class:`~moths_framework.model.detector.Detector`.

The clauses run on one model, built for :data:`NUM_CLASSES` classes, with random
weights :func:`spread_weights` makes give every box its own score, and
postprocessing set to cut at no score (so there are boxes to check).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moths_framework.export.detector_onnx import trace_detector
from moths_framework.export.detector_parity import check_detector_parity, synthetic_frames
from moths_framework.model.detection_graph import DetectionGraph
from moths_framework.model.detector import Detector
from moths_framework.preprocessing import DetectorPreprocessing
from moths_framework.testing.contract import (
    ContractError,
    build_plugin,
    rebuilt_from_spec,
    require,
    run_clauses,
)

__all__ = [
    "DETECTOR_CHECKS",
    "NUM_CLASSES",
    "DetectorContractError",
    "DetectorUnderTest",
    "check_detector",
    "spread_weights",
]

NUM_CLASSES = 3
MAX_DETECTIONS = 100  # while checking: enough boxes to check, few enough to be quick
#: Scores of random-weight models amplify float rounding: their parity allows this
#: much (exported trained detectors are held to detector_parity's 1e-4).
RANDOM_WEIGHTS_SCORE_TOLERANCE = 1e-3
_EDGE = 1e-3  # pixels a box may reach past the frame's edge (float rounding)


class DetectorContractError(ContractError):
    """A detector breaks one or more clauses of the contract; one line per clause."""


@dataclass
class DetectorUnderTest:
    """A detector, the model it built, and the frames the clauses run it on: two of
    different sizes, and a third size only the exported graph sees."""

    detector: Detector
    model: nn.Module
    frames: list[torch.Tensor]
    detections: list[dict[str, torch.Tensor]] = dataclasses.field(default_factory=list)


def spread_weights(model: nn.Module, frames: list[torch.Tensor], seed: int = 0) -> nn.Module:
    """Redraw ``model``'s convolution and linear weights so each box gets its own score.

    Freshly initialised detection heads give every box nearly the same score, and
    tied scores make the order of NMS, and so its result, arbitrary: no parity
    check could hold. Each layer is drawn at random and scaled, in the order the
    model calls them on ``frames`` (one batch), so its output has unit spread and
    zero mean per channel (where it has a bias): every layer then passes on a
    signal. Such a network is tuned to these frames: check parity on them.
    """
    generator = torch.Generator().manual_seed(seed)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for layer in layers:
            fan_in = layer.weight[0].numel()
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / fan_in**0.5)
            if layer.bias is not None:
                layer.bias.zero_()
    seen: set[int] = set()

    def normalise(layer: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if id(layer) in seen:  # a shared head runs once per feature level
            return None
        seen.add(id(layer))
        std = out.std()
        if not (torch.isfinite(std) and std > 0):
            return None
        layer.weight.div_(std)
        out = out / std
        if layer.bias is not None:
            mean = out.mean(dim=[d for d in range(out.dim()) if d != 1], keepdim=True)
            layer.bias.div_(std).sub_(mean.flatten())
            out = out - mean
        return out

    handles = [layer.register_forward_hook(normalise) for layer in layers]
    try:
        with torch.no_grad():
            model.eval()(list(frames))
    finally:
        for handle in handles:
            handle.remove()
    return model


def _detections(subject: DetectorUnderTest, cached: bool = False) -> list[dict[str, torch.Tensor]]:
    """The model's detections on the first two frames (``cached``: as first computed)."""
    if cached and subject.detections:
        return subject.detections
    with torch.no_grad():
        out = subject.model.eval()(subject.frames[:2])
    require(isinstance(out, list) and len(out) == 2, "eval forward on 2 frames is not a 2-list")
    for d in out:
        require(isinstance(d, dict), f"eval forward gives a {type(d).__name__} per frame")
        missing = {"boxes", "scores", "labels"} - set(d)
        require(not missing, f"a frame's detections have no {', '.join(sorted(missing))}")
    if cached:
        subject.detections = out
    return out


def check_preprocessing_is_valid(subject: DetectorUnderTest) -> None:
    pre = subject.detector.preprocessing
    require(isinstance(pre, DetectorPreprocessing), f"preprocessing is a {type(pre).__name__}")
    require(
        DetectorPreprocessing.from_json(pre.to_json()) == pre, "preprocessing does not survive JSON"
    )
    transform = getattr(subject.model, "transform", None)
    if not all(hasattr(transform, a) for a in ("min_size", "max_size", "image_mean")):
        return  # not a torchvision-style model: what it does is checked by the clauses below
    said = (pre.min_side, pre.max_side, list(pre.mean), list(pre.std))
    done = (min(transform.min_size), transform.max_size, transform.image_mean, transform.image_std)
    pairs = zip(said[2] + said[3], list(done[2]) + list(done[3]), strict=True)
    close = all(abs(a - b) < 1e-6 for a, b in pairs)
    require(
        said[:2] == done[:2] and close,
        f"the model's transform resizes to min {done[0]}, max {done[1]}, mean {done[2]}, "
        f"std {done[3]}; the preprocessing says min {said[0]}, max {said[1]}, mean {said[2]}, "
        f"std {said[3]}",
    )


def check_forward_gives_boxes_in_each_frame(subject: DetectorUnderTest) -> None:
    found = 0
    for frame, d in zip(subject.frames[:2], _detections(subject, cached=True), strict=True):
        h, w = frame.shape[1:]
        boxes, scores, labels = d["boxes"], d["scores"], d["labels"]
        k = len(boxes)
        found += k
        require(
            boxes.dtype == torch.float32 and tuple(boxes.shape) == (k, 4),
            f"boxes are {boxes.dtype} {tuple(boxes.shape)}, not float32 [K, 4]",
        )
        require(tuple(scores.shape) == (k,) and tuple(labels.shape) == (k,), "boxes, scores and "
                f"labels differ in length: {k}, {len(scores)}, {len(labels)}")  # fmt: skip
        require(k <= MAX_DETECTIONS, f"{k} boxes, above max_detections {MAX_DETECTIONS}")
        x1, y1, x2, y2 = boxes.unbind(1) if k else (torch.zeros(0),) * 4
        inside = (x1 >= -_EDGE) & (y1 >= -_EDGE) & (x2 <= w + _EDGE) & (y2 <= h + _EDGE)
        inside &= (x1 <= x2) & (y1 <= y2)
        require(bool(inside.all()), f"boxes outside the {w}x{h} frame or not x1<=x2, y1<=y2 "
                f"(in the model's resized pixels?): {boxes[~inside][:2].tolist()}")  # fmt: skip
        require(bool(((scores >= 0) & (scores <= 1)).all()), "scores outside [0, 1]")
        require(bool((scores[1:] <= scores[:-1]).all()), "scores are not sorted, highest first")
        require(labels.dtype == torch.int64, f"labels are {labels.dtype}, not int64")
        bad = labels[(labels < 1) | (labels > NUM_CLASSES)]
        require(not len(bad), f"labels {sorted(set(bad.tolist()))[:5]} outside 1..{NUM_CLASSES}")
    require(found > 0, "no box on either frame even with score threshold 0: nothing to check")


def check_set_postprocess_applies(subject: DetectorUnderTest) -> None:
    detector, model = subject.detector, subject.model
    scores = torch.cat([d["scores"] for d in _detections(subject, cached=True)])
    try:
        detector.set_postprocess(model, score_threshold=0.0, nms_iou=0.5, max_detections=3)
        most = max(len(d["boxes"]) for d in _detections(subject))
        require(most <= 3, f"set_postprocess(max_detections=3) leaves {most} boxes on a frame")
        cut = float(scores.median())
        detector.set_postprocess(model, score_threshold=cut, nms_iou=0.5, max_detections=100)
        low = [float(s) for d in _detections(subject) for s in d["scores"] if s < cut]
        require(not low, f"set_postprocess(score_threshold={cut:.3f}) leaves scores {low[:3]}")
    finally:
        detector.set_postprocess(
            model, score_threshold=0.0, nms_iou=detector.nms_iou, max_detections=MAX_DETECTIONS
        )


def _targets(frames: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    targets = []
    for frame in frames:
        h, w = frame.shape[1:]
        boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, w, h]])
        targets.append({"boxes": boxes, "labels": torch.tensor([1, NUM_CLASSES])})
    return targets


def check_train_mode_returns_losses(subject: DetectorUnderTest) -> None:
    model = subject.model
    state = copy.deepcopy(model.state_dict())  # a training forward moves BatchNorm statistics
    try:
        model.train()
        losses = model(subject.frames[:2], _targets(subject.frames[:2]))
        require(isinstance(losses, dict) and losses, f"train forward gives {type(losses).__name__}")
        for name, value in losses.items():
            shape_ok = isinstance(value, torch.Tensor) and value.dim() == 0
            finite = shape_ok and bool(torch.isfinite(value))
            require(finite, f"loss {name!r} is not a finite scalar")
        sum(losses.values()).backward()
        learning = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.any()]
        require(bool(learning), "the summed losses give no parameter a gradient")
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)
        model.eval()


def check_spec_rebuilds_the_same_architecture(subject: DetectorUnderTest) -> None:
    detector = subject.detector
    rebuilt, spec = rebuilt_from_spec(detector)
    shapes = {k: tuple(v.shape) for k, v in subject.model.state_dict().items()}
    rebuilt_shapes = {k: tuple(v.shape) for k, v in rebuilt.build(NUM_CLASSES).state_dict().items()}
    require(rebuilt_shapes == shapes, "spec() rebuilds other weight names or shapes")
    require(rebuilt.preprocessing == detector.preprocessing, "spec() rebuilds other preprocessing")
    require(rebuilt.postprocess() == detector.postprocess(), "spec() rebuilds other postprocess")
    require(rebuilt.spec() == spec, "the rebuilt detector's spec() differs")


def check_onnx_export_agrees(subject: DetectorUnderTest) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "detector.onnx"
        graph = DetectionGraph(subject.model, subject.detector.preprocessing)
        trace_detector(graph, path, subject.frames[0])
        frames = ((frame, "frames") for frame in subject.frames)
        check_detector_parity(
            graph, path, frames,
            nms_iou=subject.detector.nms_iou, max_detections=MAX_DETECTIONS, min_score=0.0,
            score_tolerance=RANDOM_WEIGHTS_SCORE_TOLERANCE,
        )  # fmt: skip


#: Clause name -> check; each raises AssertionError with the reason.
DETECTOR_CHECKS: dict[str, Callable[[DetectorUnderTest], None]] = {
    "preprocessing is valid and is what the model does": check_preprocessing_is_valid,
    "eval forward gives boxes in each frame, sorted scores, labels 1..N": (
        check_forward_gives_boxes_in_each_frame
    ),
    "set_postprocess applies": check_set_postprocess_applies,
    "train mode returns a loss dict": check_train_mode_returns_losses,
    "spec rebuilds the same architecture": check_spec_rebuilds_the_same_architecture,
    "exports to ONNX and ONNX Runtime agrees": check_onnx_export_agrees,
}


def check_detector(plugin: Any, /, **init_args: Any) -> None:
    """Check that a detector follows the contract of :class:`Detector`.

    Seeds torch with 0, builds the detector, builds its model for
    :data:`NUM_CLASSES` classes, and runs every clause of :data:`DETECTOR_CHECKS`
    on two small frames of different sizes (a third for the exported graph).

    Args:
        plugin: a ``Detector`` subclass (built by ``small_example()`` when no
            ``init_args`` are given, else ``plugin(**init_args)``), a factory
            function, or an instance.
        **init_args: the arguments to build it with.

    Raises:
        DetectorContractError: it cannot be built, or one line per failing clause.
    """
    torch.manual_seed(0)
    detector = build_plugin(plugin, "detectors", init_args, DetectorContractError)
    name = type(detector).__qualname__
    try:
        model = detector.build(NUM_CLASSES)
    except Exception as err:  # any failure here is the plugin's
        raise DetectorContractError(f"{name}.build({NUM_CLASSES}) failed: {err}") from err
    if not isinstance(model, nn.Module):
        raise DetectorContractError(f"{name}.build() returned a {type(model).__name__}")
    frames = list(synthetic_frames(DetectorPreprocessing(min_side=128, max_side=256), 3))
    try:
        detector.set_postprocess(
            model, score_threshold=0.0, nms_iou=detector.nms_iou, max_detections=MAX_DETECTIONS
        )
        spread_weights(model, frames)
    except Exception as err:
        raise DetectorContractError(f"{name}: cannot run its model: {err}") from err
    subject = DetectorUnderTest(detector, model, frames)
    run_clauses(subject, "detector", DETECTOR_CHECKS, DetectorContractError, name=name)
