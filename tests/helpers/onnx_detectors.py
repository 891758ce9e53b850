"""Detector files made by hand with ``onnx.helper``, so the boxes they give are known.

Each follows the detector file contract (input ``images`` ``[1, 3, H, W]`` in
[0, 1]; outputs ``boxes``, ``scores``, ``labels``; moths metadata with
``moths.task = detection``) without being a neural network:

- :func:`fraction_detector`: fixed boxes, as fractions of the input's size, with
  fixed scores: the boxes on any frame are those fractions of the frame's size;
- :func:`grid_detector`: a 20 x 10 grid of cells over a 160 x 120 input; a cell's
  score is its mean brightness (the brightest channel), so a frame with bright
  cells painted on a dark sheet has exactly those cells as boxes;
- :func:`scale_probe_detector`: one box ``(0, 0, 10, 10)`` in the input's pixels,
  whose size on the frame reveals the working size the reader resized it to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from moths_framework.inference.detector_metadata import DetectorMetadata
from moths_framework.preprocessing import DetectorPreprocessing

OPSET = 17
# The grid detector's input size and cells: a 4:3 frame of any size is resized to it.
GRID_INPUT = (160, 120)  # (width, height)
GRID = (20, 10)  # cells across, cells down: 200 cells of 8 x 12 input pixels
GRID_PREPROCESSING = DetectorPreprocessing(min_side=120, max_side=160)
SHEET, BRIGHT = 30, 240  # the dark sheet and a bright cell, grey levels


def _save(graph: onnx.GraphProto, path: Path, metadata: DetectorMetadata) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    helper.set_model_props(model, metadata.to_props())
    onnx.save(model, str(path))
    return path


def _io(k: int | str = "K") -> tuple[list, list]:
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, "H", "W"])]
    outputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [k, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [k]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, [k]),
    ]
    return inputs, outputs


def _constant(name: str, values: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(values, name))


def metadata(
    classes: Sequence[str] = ("moth",),
    preprocessing: DetectorPreprocessing = GRID_PREPROCESSING,
    score_threshold: float = 0.5,
    max_detections: int = 500,
) -> DetectorMetadata:
    return DetectorMetadata(
        tuple(classes), preprocessing, score_threshold, 0.5, max_detections, {"made_by": "tests"}
    )


def fraction_detector(
    path: Path,
    fractions: Sequence[Sequence[float]],
    scores: Sequence[float],
    labels: Sequence[int] | None = None,
    meta: DetectorMetadata | None = None,
) -> Path:
    """Boxes ``fraction * (W, H, W, H)`` of the input, with ``scores`` and ``labels``."""
    k = len(scores)
    boxes = np.asarray(fractions, dtype=np.float32).reshape(k, 4)
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        _constant("w_at", np.array([3], dtype=np.int64)),
        _constant("h_at", np.array([2], dtype=np.int64)),
        helper.make_node("Gather", ["shape", "w_at"], ["w"]),
        helper.make_node("Gather", ["shape", "h_at"], ["h"]),
        helper.make_node("Concat", ["w", "h", "w", "h"], ["whwh_int"], axis=0),
        helper.make_node("Cast", ["whwh_int"], ["whwh"], to=TensorProto.FLOAT),
        _constant("fractions", boxes),
        helper.make_node("Mul", ["fractions", "whwh"], ["boxes"]),
        _constant("score_values", np.asarray(scores, dtype=np.float32).reshape(k)),
        helper.make_node("Identity", ["score_values"], ["scores"]),
        _constant("label_values", np.asarray(labels or [1] * k, dtype=np.int64).reshape(k)),
        helper.make_node("Identity", ["label_values"], ["labels"]),
    ]
    graph = helper.make_graph(nodes, "fraction_detector", *_io(k))
    return _save(graph, path, meta or metadata())


def grid_cells(scale: float = 1.0) -> np.ndarray:
    """The grid's cells ``[200, 4]`` (x1, y1, x2, y2), row by row, in input pixels × ``scale``."""
    width, height = GRID_INPUT[0] // GRID[0], GRID_INPUT[1] // GRID[1]
    rows = [
        (c * width, r * height, (c + 1) * width, (r + 1) * height)
        for r in range(GRID[1])
        for c in range(GRID[0])
    ]
    return np.asarray(rows, dtype=np.float32) * scale


def grid_detector(path: Path, meta: DetectorMetadata | None = None) -> Path:
    """200 boxes, the grid's cells; each scored by its mean brightness (max over channels).

    Its scores are in cell order, not sorted: a reader must not rely on the order.
    """
    cell = [GRID_INPUT[1] // GRID[1], GRID_INPUT[0] // GRID[0]]  # (height, width)
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["bright"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["bright"], ["means"], kernel_shape=cell, strides=cell),
        _constant("flat", np.array([-1], dtype=np.int64)),
        helper.make_node("Reshape", ["means", "flat"], ["scores"]),
        _constant("boxes_values", grid_cells()),
        helper.make_node("Identity", ["boxes_values"], ["boxes"]),
        _constant("label_values", np.ones(GRID[0] * GRID[1], dtype=np.int64)),
        helper.make_node("Identity", ["label_values"], ["labels"]),
    ]
    graph = helper.make_graph(nodes, "grid_detector", *_io(GRID[0] * GRID[1]))
    return _save(graph, path, meta or metadata())


def scale_probe_detector(path: Path, preprocessing: DetectorPreprocessing) -> Path:
    """One box ``(0, 0, 10, 10)`` in input pixels, score 1: on a ``W x H`` frame it reads
    ``(0, 0, 10 W / w, 10 H / h)``, ``w x h`` being the size the reader fed the graph."""
    nodes = [
        _constant("boxes_values", np.array([[0, 0, 10, 10]], dtype=np.float32)),
        helper.make_node("Identity", ["boxes_values"], ["boxes"]),
        _constant("score_values", np.array([1.0], dtype=np.float32)),
        helper.make_node("Identity", ["score_values"], ["scores"]),
        _constant("label_values", np.array([1], dtype=np.int64)),
        helper.make_node("Identity", ["label_values"], ["labels"]),
        # the input must reach an output's computation or ONNX Runtime drops it
        helper.make_node("Shape", ["images"], ["shape"]),
    ]
    inputs, outputs = _io(1)
    outputs.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [4]))
    graph = helper.make_graph(nodes, "scale_probe_detector", inputs, outputs)
    return _save(graph, path, metadata(preprocessing=preprocessing))


def sheet(width: int = 640, height: int = 480) -> np.ndarray:
    """A dark sheet, ``[height, width, 3]`` uint8, with a faint texture."""
    rng = np.random.default_rng(width * height)
    return (SHEET + rng.integers(-5, 6, (height, width, 3))).astype(np.uint8)


def paint_cells(
    pixels: np.ndarray, cells: dict[tuple[int, int], int] | Sequence[tuple[int, int]]
) -> np.ndarray:
    """Paint grid cells ``(column, row)`` of a 4:3 frame at a grey level (default bright),
    a brighter upper half and a dimmer lower half, so a crop's orientation shows."""
    levels = cells if isinstance(cells, dict) else dict.fromkeys(cells, BRIGHT)
    height, width = pixels.shape[:2]
    cw, ch = width // GRID[0], height // GRID[1]
    out = pixels.copy()
    for (column, row), level in levels.items():
        top, left = row * ch, column * cw
        out[top : top + ch // 2, left : left + cw] = level
        out[top + ch // 2 : top + ch, left : left + cw] = max(level - 30, 0)
    return out


def save_frame(path: Path, pixels: np.ndarray, orientation: int | None = None) -> Path:
    """Save a frame (PNG or JPEG by suffix). With ``orientation`` 6, the file holds the
    pixels turned a quarter left and says so in EXIF: a viewer shows ``pixels``."""
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation == 6:
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    quality = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    image.save(path, exif=exif.tobytes(), **quality)
    return path
