"""Parity between an exported detector and the PyTorch model it came from.

Both run the same frames; every box scoring at least ``min_score`` (the score
threshold: the boxes a reader keeps) on either side must have a counterpart on
the other with the same label, corners within 1 px and a score within 1e-4, so
both keep as many. The only boxes allowed to go without one are those a
difference far below these tolerances may legitimately flip: a box tied (within
1e-4) with ``min_score`` or with the last one kept at the ``max_detections``
cut, and a box whose overlap with a higher-scoring one is within 1e-3 of the
NMS IoU. Such ties are counted in the report; anything else refuses the export.

Boxes below the threshold are not compared: among them, proposals whose scores
tie at the region proposal network's own cut (1000 a level) may differ, and with
them a few weak boxes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

from moths_framework.export import ExportError
from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.inference.detector_metadata import (
    BOXES_OUTPUT,
    DETECTOR_INPUT,
    LABELS_OUTPUT,
    SCORES_OUTPUT,
)
from moths_framework.model.detection_graph import DetectionGraph
from moths_framework.preprocessing import DetectorPreprocessing

__all__ = [
    "BOX_TOLERANCE",
    "PARITY_FRAMES",
    "SCORE_TOLERANCE",
    "DetectorParityReport",
    "check_detector_parity",
    "frames_for_parity",
    "synthetic_frames",
]

log = logging.getLogger(__name__)

BOX_TOLERANCE = 1.0  # pixels, each corner coordinate
SCORE_TOLERANCE = 1e-4
IOU_TOLERANCE = 1e-3  # an overlap this close to the NMS IoU may be suppressed on one side only
PARITY_FRAMES = 16
_SHAPES = ((3, 4), (4, 3), (1, 1), (9, 16), (16, 9), (2, 3))  # height : width
_SCALES = (1.0, 0.75, 1.25)
_OUTPUTS = [BOXES_OUTPUT, SCORES_OUTPUT, LABELS_OUTPUT]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [K, 4], scores [K], labels [K]


@dataclass(frozen=True)
class DetectorParityReport:
    """How close ONNX Runtime (CPU) is to PyTorch on the same frames."""

    frames: int
    source: str  # "frames" (images) or "synthetic"
    sizes: int  # distinct frame sizes among them
    boxes: int  # boxes matched
    ties: int  # boxes without a counterpart, each explained by a tie (see the module)
    max_box_diff: float  # pixels
    max_score_diff: float

    def __str__(self) -> str:
        ties = f", {self.ties} tied at a cut or in NMS" if self.ties else ""
        return (
            f"parity on {self.frames} {'synthetic ' if self.source == 'synthetic' else ''}"
            f"frames ({self.sizes} sizes): "
            f"{self.boxes} boxes matched, max |Δbox| {self.max_box_diff:.2e} px, "
            f"max |Δscore| {self.max_score_diff:.2e}{ties}"
        )


def synthetic_frames(
    preprocessing: DetectorPreprocessing, count: int = PARITY_FRAMES, seed: int = 0
) -> Iterator[torch.Tensor]:
    """``count`` seeded frames of varied sizes and aspect ratios around the model's own
    size, float ``(3, H, W)`` in [0, 1]: a dim, unevenly lit sheet with a few bright
    patches, all smooth (pixel noise would make even two exact implementations of
    the model differ more than real frames do)."""
    generator = torch.Generator().manual_seed(seed)
    base = preprocessing.min_side
    for i in range(count):
        a, b = _SHAPES[i % len(_SHAPES)]
        scale = _SCALES[(i // len(_SHAPES)) % len(_SCALES)] * base / min(a, b)
        h, w = max(32, round(a * scale)), max(32, round(b * scale))
        frame = torch.rand(1, 3, h // 16 + 2, w // 16 + 2, generator=generator) * 0.3 + 0.1
        frame = F.interpolate(frame, size=(h, w), mode="bilinear", align_corners=False)
        for _ in range(4):
            ph = int(torch.randint(h // 10 + 1, h // 3 + 2, (1,), generator=generator))
            pw = int(torch.randint(w // 10 + 1, w // 3 + 2, (1,), generator=generator))
            y = int(torch.randint(0, h - ph + 1, (1,), generator=generator))
            x = int(torch.randint(0, w - pw + 1, (1,), generator=generator))
            colour = torch.rand(1, 3, 1, 1, generator=generator) * 0.5 + 0.5
            frame[:, :, y : y + ph, x : x + pw] = colour
        blur = max(3, base // 32) | 1  # odd: soft edges, same size
        yield F.avg_pool2d(frame, blur, stride=1, padding=blur // 2, count_include_pad=False)[0]


def frames_for_parity(
    frames: Sequence[str | Path | torch.Tensor] | None,
    preprocessing: DetectorPreprocessing,
    limit: int = PARITY_FRAMES,
) -> Iterator[tuple[torch.Tensor, str]]:
    """Up to ``limit`` frames, decoded one at a time, each with its source: tensors and
    images (``frames``, EXIF orientation applied), else synthetic ones when none decode."""
    given = 0
    for item in list(frames or [])[:limit]:
        if isinstance(item, torch.Tensor):
            given += 1
            yield item, "frames"
            continue
        try:
            image = open_rgb(item)
        except (ImageDecodeError, OSError) as err:
            log.warning("parity: skipping %s: %s", item, err)
            continue
        given += 1
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        yield pixels.permute(2, 0, 1).float().div_(255), "frames"
    if not given:
        if frames:
            log.warning("no frame could be read: checking parity on synthetic frames")
        yield from ((f, "synthetic") for f in synthetic_frames(preprocessing, limit))


def check_detector_parity(
    graph: DetectionGraph,
    onnx_path: str | Path,
    frames: Iterator[tuple[torch.Tensor, str]],
    *,
    nms_iou: float,
    max_detections: int,
    min_score: float,
    score_tolerance: float = SCORE_TOLERANCE,
) -> DetectorParityReport:
    """Run ``graph`` (eval mode) and the ONNX file on each frame and match the boxes
    scoring at least ``min_score`` (see the module docstring); ``score_tolerance``
    only for random-weight models, whose scores amplify float rounding.

    Raises:
        ExportError: a box without a counterpart (not explained by a tie), or no box
            to compare on any frame.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    graph.eval()
    count, sources, sizes = 0, set(), set()
    matched = ties = 0
    box_diff = score_diff = 0.0
    for frame, source in frames:
        count, sizes = count + 1, sizes | {tuple(frame.shape[1:])}
        sources.add(source)
        with torch.inference_mode():
            expected = tuple(t.numpy() for t in graph(frame[None]))
        got = tuple(session.run(_OUTPUTS, {DETECTOR_INPUT: frame[None].numpy()}))
        result = _match(expected, got, nms_iou, max_detections, min_score, score_tolerance)
        if result.problem:
            h, w = frame.shape[1:]
            raise ExportError(
                f"the exported detector does not match PyTorch on frame {count} ({w}x{h}): "
                f"{result.problem}; nothing written"
            )
        matched, ties = matched + result.matched, ties + result.ties
        box_diff, score_diff = max(box_diff, result.box_diff), max(score_diff, result.score_diff)
    if not matched:
        raise ExportError(
            f"parity: no box scores at least {min_score:g} on the {count} frames, so nothing "
            "could be compared: give frames with moths (--images); nothing written"
        )
    source = "frames" if sources == {"frames"} else "synthetic"
    return DetectorParityReport(count, source, len(sizes), matched, ties, box_diff, score_diff)


@dataclass(frozen=True)
class _Match:
    matched: int
    ties: int
    box_diff: float
    score_diff: float
    problem: str | None = None


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [A, 4] with every box of ``b`` [B, 4]."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _match(
    expected: Detections,
    got: Detections,
    nms_iou: float,
    max_detections: int,
    min_score: float,
    score_tolerance: float = SCORE_TOLERANCE,
) -> _Match:
    (eb, es, el), (gb, gs, gl) = expected, got
    corner = np.abs(eb[:, None, :] - gb[None, :, :]).max(-1) if len(eb) and len(gb) else None
    pairs: list[tuple[int, int]] = []
    if corner is not None:
        fits = (el[:, None] == gl[None, :]) & (np.abs(es[:, None] - gs[None, :]) <= score_tolerance)
        fits &= corner <= BOX_TOLERANCE
        used: set[int] = set()
        for i in np.argsort(-es, kind="stable"):
            options = [j for j in np.flatnonzero(fits[i]) if j not in used]
            if options:
                j = min(options, key=lambda j: corner[i, j])
                used.add(j)
                pairs.append((int(i), int(j)))
    pairs = [(i, j) for i, j in pairs if max(es[i], gs[j]) >= min_score]
    lone_e = sorted(set(np.flatnonzero(es >= min_score)) - {i for i, _ in pairs})
    lone_g = sorted(set(np.flatnonzero(gs >= min_score)) - {j for _, j in pairs})
    explained = _ties(
        expected, lone_e, got, lone_g, nms_iou, max_detections, min_score, score_tolerance
    )
    box_diff = max((float(corner[i, j]) for i, j in pairs), default=0.0)
    score_diff = max((float(abs(es[i] - gs[j])) for i, j in pairs), default=0.0)
    left_e = [i for i in lone_e if ("e", i) not in explained]
    left_g = [j for j in lone_g if ("g", j) not in explained]
    if left_e or left_g:
        side, (b, s, lab), k = (
            ("PyTorch", expected, left_e[0]) if left_e else ("ONNX Runtime", got, left_g[0])
        )
        problem = (
            f"PyTorch gives {len(lone_e) + len(pairs)} boxes scoring at least {min_score:g}, "
            f"ONNX Runtime {len(lone_g) + len(pairs)}; "
            f"{len(left_e) + len(left_g)} have no counterpart, e.g. {side}'s "
            f"{np.round(b[k], 1).tolist()} score {float(s[k]):.5f} label {int(lab[k])}"
        )
        return _Match(len(pairs), len(explained), box_diff, score_diff, problem)
    return _Match(len(pairs), len(explained), box_diff, score_diff)


def _ties(
    expected: Detections,
    lone_e: list[int],
    got: Detections,
    lone_g: list[int],
    nms_iou: float,
    max_detections: int,
    min_score: float,
    score_tolerance: float,
) -> set[tuple[str, int]]:
    """The unmatched boxes a tie explains (see the module docstring)."""
    explained: set[tuple[str, int]] = set()
    for tag, (b, s, lab), lone in (("e", expected, lone_e), ("g", got, lone_g)):
        cut = s.min() if len(s) >= max_detections else -1.0
        for k in lone:
            at_cut = s[k] <= max(cut, min_score) + score_tolerance
            higher = (s > s[k]) & (lab == lab[k])
            overlap = _iou(b[k : k + 1], b[higher])[0] if higher.any() else np.zeros(0)
            at_nms = bool((np.abs(overlap - nms_iou) <= IOU_TOLERANCE).any())
            if at_cut or at_nms:
                explained.add((tag, k))
    return explained
