"""OnnxDetector: a detector file on ONNX Runtime, boxes in the frame's pixels.

Hand-made graphs (helpers/onnx_detectors.py) give boxes known in advance; the
working sizes below are worked out by hand from torchvision's resize rule. One
detector exported from a small torchvision Faster R-CNN checks the plumbing
against PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.onnx_detectors import (
    fraction_detector,
    grid_detector,
    metadata,
    paint_cells,
    save_frame,
    scale_probe_detector,
    sheet,
)
from helpers.onnx_models import export_model, tiny_net
from helpers.onnx_models import metadata as classifier_metadata
from helpers.tiny_detector import TinyDetector, trained_looking
from PIL import Image

from moths_framework.export.detector_onnx import export_detector_onnx
from moths_framework.inference import ModelFormatError, OnnxClassifier, OnnxDetector
from moths_framework.model.detection_graph import DetectionGraph
from moths_framework.preprocessing import DetectorPreprocessing

FRACTIONS = [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0]]


@pytest.mark.parametrize("size", [(640, 480), (100, 300), (1000, 200), (161, 121)])
def test_boxes_are_in_the_frames_pixels_whatever_its_size(tmp_path: Path, size) -> None:
    detector = OnnxDetector.from_file(
        fraction_detector(tmp_path / "d.onnx", FRACTIONS, [0.9, 0.8, 0.7]), "cpu"
    )
    width, height = size
    found = detector.detect(Image.new("RGB", size, (90, 90, 90)))
    expected = np.asarray(FRACTIONS) * [width, height, width, height]
    np.testing.assert_allclose([d.box for d in found], expected, atol=1e-3)
    assert [d.score for d in found] == pytest.approx([0.9, 0.8, 0.7]) and found[0].label == "moth"


@pytest.mark.parametrize(
    ("preprocessing", "frame", "seen"),
    [  # worked out by hand: shorter side to min_side unless the longer passes max_side
        (DetectorPreprocessing(800, 1333), (2048, 1536), (1066, 800)),  # 2048 * 800/1536
        (DetectorPreprocessing(800, 1333), (4096, 2160), (1333, 702)),  # 2160 * 1333/4096
        (DetectorPreprocessing(800, 1333), (300, 100), (1333, 444)),  # made larger
        (DetectorPreprocessing(320, 640), (1536, 2048), (320, 426)),  # portrait
        (DetectorPreprocessing(fixed_size=(320, 320)), (2048, 1536), (320, 320)),  # SSD
    ],
)
def test_the_graph_gets_the_frame_at_its_working_size(tmp_path, preprocessing, frame, seen):
    detector = OnnxDetector.from_file(scale_probe_detector(tmp_path / "p.onnx", preprocessing))
    (box,) = [d.box for d in detector.detect(Image.new("RGB", frame))]
    # (0, 0, 10, 10) in the graph's input pixels reads 10 * frame / seen on the frame
    assert box == pytest.approx((0, 0, 10 * frame[0] / seen[0], 10 * frame[1] / seen[1]))


def test_a_large_jpeg_is_kept_whole_for_crops_fast_decoded_or_not(tmp_path) -> None:
    frame = save_frame(tmp_path / "big.jpg", paint_cells(sheet(2048, 1536), [(3, 4)]))
    path = grid_detector(tmp_path / "g.onnx")
    inputs = []
    for fast_decode in (False, True):
        detector = OnnxDetector.from_file(path, fast_decode=fast_decode)
        loaded = detector.load(str(frame), keep_image=True)
        assert loaded.size == (2048, 1536) and loaded.image.size == (2048, 1536)
        assert loaded.input.shape == (1, 3, 120, 160) and loaded.input.dtype == np.float32
        (found,) = detector.detect(str(frame))
        assert found.box == pytest.approx((3 * 102.4, 4 * 153.6, 4 * 102.4, 5 * 153.6))
        inputs.append(loaded.input)
    assert not np.array_equal(*inputs)  # fast: decoded at 1/8 scale (256 x 192), then resized


@pytest.mark.parametrize("size", [(2048, 1536), (333, 251), (100, 75)])
def test_the_reader_resizes_a_frame_as_the_graph_does(tmp_path, size) -> None:
    pixels = np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), np.uint8)
    detector = OnnxDetector.from_file(grid_detector(tmp_path / "g.onnx"))
    ours = detector.model_input(Image.fromarray(pixels))[0]
    # the oracle: what the exported graph does, torch's bilinear resize of the whole frame
    frame = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255
    graphs = F.interpolate(frame, size=ours.shape[1:], mode="bilinear", align_corners=False)[0]
    difference = np.abs(ours - graphs.numpy()) * 255  # in grey levels
    assert difference.max() <= 1.5 and difference.mean() <= 0.6  # Pillow rounds down


def test_min_score_and_max_detections_cut_best_first(tmp_path: Path) -> None:
    # scores out of order in the graph: the reader sorts them
    path = fraction_detector(
        tmp_path / "d.onnx", [FRACTIONS[0]] * 5, [0.3, 0.9, 0.5, 0.45, 0.7], meta=metadata(
            score_threshold=0.45, max_detections=4)
    )  # fmt: skip
    frame = Image.new("RGB", (160, 120))
    scores = [d.score for d in OnnxDetector.from_file(path).detect(frame)]
    assert scores == pytest.approx([0.9, 0.7, 0.5, 0.45])  # the file's threshold, inclusive
    only = OnnxDetector.from_file(path, min_score=0.6)
    assert [d.score for d in only.detect(frame)] == pytest.approx([0.9, 0.7])
    most = OnnxDetector.from_file(path, min_score=0.0, max_detections=2)
    assert [d.score for d in most.detect(frame)] == pytest.approx([0.9, 0.7])
    # the file keeps at most 4 a frame; asking for more gives no more
    assert OnnxDetector.from_file(path, min_score=0.0, max_detections=9).max_detections == 4
    for bad in ({"min_score": 1.5}, {"max_detections": 0}):
        with pytest.raises(ValueError, match="min_score|max_detections"):
            OnnxDetector.from_file(path, **bad)


def test_labels_name_the_detectors_classes(tmp_path: Path) -> None:
    path = fraction_detector(
        tmp_path / "d.onnx", FRACTIONS[:2], [0.9, 0.8], [2, 1],
        metadata(classes=("moth", "caddisfly")),
    )  # fmt: skip
    found = OnnxDetector.from_file(path).detect(Image.new("RGB", (40, 30)))
    assert [d.label for d in found] == ["caddisfly", "moth"]


def test_an_exif_rotated_frame_gives_boxes_as_shown(tmp_path: Path) -> None:
    shown = paint_cells(sheet(), [(17, 2)])  # 640 x 480 as a viewer shows it
    frame = save_frame(tmp_path / "rotated.jpg", shown, orientation=6)
    assert Image.open(frame).size == (480, 640)  # stored upright
    detector = OnnxDetector.from_file(grid_detector(tmp_path / "g.onnx"))
    (found,) = detector.detect(str(frame))
    assert found.box == pytest.approx((17 * 32, 2 * 48, 18 * 32, 3 * 48))


def test_each_reader_refuses_the_others_file_and_says_which_to_use(tmp_path: Path) -> None:
    classifier = export_model(tiny_net(), tmp_path / "cls.onnx", classifier_metadata())
    said = r"cls\.onnx is not a moths-export detector: .*it is a classifier; open it as one"
    with pytest.raises(ModelFormatError, match=said + r" \(OnnxClassifier, moths-infer --model\)"):
        OnnxDetector.from_file(classifier)
    detector = grid_detector(tmp_path / "det.onnx")
    said = r"det\.onnx is a detection model .*not a classifier; open it as a detector"
    with pytest.raises(ModelFormatError, match=said + r" \(OnnxDetector"):
        OnnxClassifier.from_file(detector)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DetectionGraph]:
    """A small torchvision Faster R-CNN exported by moths-export's exporter, and the
    graph PyTorch runs (no score cut, as in the file)."""
    detector = TinyDetector(score_threshold=0.0, max_detections=50)
    frames = [torch.from_numpy(_frame(s).copy()).permute(2, 0, 1).float() / 255 for s in range(3)]
    model = trained_looking(detector.build(1), frames)
    path = tmp_path_factory.mktemp("det") / "tiny.onnx"
    export_detector_onnx(detector, model, ["moth"], path, frames, parity_min_score=0.0)
    return path, DetectionGraph(model.eval(), detector.preprocessing)


def _frame(seed: int, size: tuple[int, int] = (160, 128)) -> np.ndarray:
    """A frame at the tiny detector's working size (shorter side 128)."""
    pixels = paint_cells(sheet(640, 480), [(seed + 2, 3), (9, seed + 5), (15, 1)])
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def test_an_exported_torchvision_detector_runs_as_pytorch_runs_it(exported, tmp_path) -> None:
    path, graph = exported
    detector = OnnxDetector.from_file(path, "cpu", min_score=0.0)
    for seed in range(3):
        pixels = _frame(seed)  # at the working size: the reader passes it on as it is
        found = detector.detect(Image.fromarray(pixels))
        with torch.no_grad():
            x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float()[None] / 255
            boxes, scores, _ = (t.numpy() for t in graph(x))
        assert len(found) == len(boxes) > 5
        for d in found:  # ties may swap order
            twins = np.abs(boxes - d.box).max(1) <= 1.0
            assert (np.abs(scores[twins] - d.score) <= 1e-4).any(), d


def test_an_exported_detector_on_a_larger_frame_finds_pytorchs_boxes(exported) -> None:
    path, graph = exported
    detector = OnnxDetector.from_file(path, "cpu", min_score=0.0)
    pixels = _frame(0, (480, 384))  # three times the working size: the reader shrinks it
    found = detector.detect(Image.fromarray(pixels))
    with torch.no_grad():  # the oracle: PyTorch's graph on the whole frame, resizing it itself
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float()[None] / 255
        boxes, scores, _ = (t.numpy() for t in graph(x))
    assert len(found) == len(boxes) > 5 and max(d.box[2] for d in found) > 160
    for d in found:  # within a grey level of the graph's pixels: boxes within 1.5 px of its own
        twins = np.abs(boxes - d.box).max(1) <= 1.5
        assert (np.abs(scores[twins] - d.score) <= 2e-3).any(), d
