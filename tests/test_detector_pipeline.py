"""Pipeline in Python, the memory it holds, a detector's TensorRT profile, and zoo entries
that are detectors."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import onnxruntime as ort
import pytest
from helpers.onnx_detectors import grid_detector, paint_cells, sheet
from helpers.onnx_models import export_model, tiny_net
from helpers.onnx_models import metadata as classifier_metadata
from helpers.paths import REPO
from PIL import Image

from moths_framework import zoo
from moths_framework.cli import zoo as zoo_cli
from moths_framework.inference import OnnxClassifier, OnnxDetector, Pipeline
from moths_framework.inference import providers as providers_module
from moths_framework.inference.pipeline import crop_box
from moths_framework.inference.providers import CPU, CUDA, TENSORRT


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> OnnxDetector:
    return OnnxDetector.from_file(grid_detector(tmp_path_factory.mktemp("d") / "g.onnx"), "cpu")


def test_a_pipeline_in_python(detector: OnnxDetector, tmp_path: Path) -> None:
    classifier = OnnxClassifier.from_file(
        export_model(tiny_net(), tmp_path / "c.onnx", classifier_metadata()), "cpu"
    )
    frame = Image.fromarray(paint_cells(sheet(), {(2, 3): 240, (11, 7): 200}))
    results = list(Pipeline(detector, classifier, keep_crops=True).run([frame, "nowhere.jpg"]))
    first, missing = results
    assert first.ok and first.source == "<image 0>" and first.size == (640, 480)
    assert [d.crop_box for d in first.detections] == [(64, 144, 96, 192), (352, 336, 384, 384)]
    assert [d.crop.size for d in first.detections] == [(32, 48), (32, 48)]
    assert [d.prediction.source for d in first.detections] == ["<image 0>#1", "<image 0>#2"]
    assert all(d.prediction.ok for d in first.detections)
    assert not missing.ok and missing.size is None and "nowhere.jpg" in missing.error
    counting = list(Pipeline(detector).run(frame))  # no classifier: boxes only, no crops cut
    assert [(d.prediction, d.crop) for d in counting[0].detections] == [(None, None)] * 2


@pytest.mark.parametrize("workers", [1, 3])
def test_frames_held_at_full_resolution_are_this_one_and_frame_workers_more(
    detector, monkeypatch, workers
) -> None:
    frames = [Image.fromarray(paint_cells(sheet(), [(k, 1)])) for k in range(6)]
    loaded, held = [], []
    real = detector.load

    def load(image, keep_image=False):  # noqa: ANN001, ANN202
        loaded.append(threading.get_ident())
        return real(image, keep_image)

    monkeypatch.setattr(detector, "load", load)
    pipeline = Pipeline(detector, keep_crops=True, frame_workers=workers)
    for number, result in enumerate(pipeline.run(frames)):
        time.sleep(0.2)  # a slow consumer: decoding runs as far ahead as it may
        held.append(len(loaded) - number)  # this frame and those loaded (or loading) ahead
        assert result.ok
    assert max(held) == workers + 1 and len(loaded) == 6
    assert len(set(loaded)) == workers
    with pytest.raises(ValueError, match="frame_workers must be >= 1, got 0"):
        Pipeline(detector, frame_workers=0)


@pytest.mark.parametrize(
    ("box", "margin", "expected"),
    [
        ((10.2, 20.7, 30.1, 40.0), 0, (10, 20, 31, 40)),  # rounded outwards
        ((10.0, 20.0, 30.0, 40.0), 15, (0, 5, 45, 55)),  # clamped at the left edge
        ((90.0, 70.0, 100.0, 80.0), 8, (82, 62, 100, 80)),  # and at the right and bottom
        ((100.0, 80.0, 100.0, 80.0), 0, (99, 79, 100, 80)),  # an empty box: one pixel
    ],
)
def test_crop_box(box, margin, expected) -> None:
    assert crop_box(box, margin, 100, 80) == expected


def test_a_detectors_tensorrt_profile_spans_its_working_sizes(tmp_path, monkeypatch) -> None:
    calls, real = [], ort.InferenceSession

    def session(path, sess_options=None, providers=None):  # noqa: ANN001, ANN202
        calls.append(dict(providers))
        if providers[0][0] != CPU:
            raise RuntimeError("no TensorRT here")
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(providers_module, "_gpu", lambda: "Test GPU")
    detector = OnnxDetector.from_file(grid_detector(tmp_path / "g.onnx"))  # falls back to CPU
    assert detector.provider == CPU
    trt = next(call[TENSORRT] for call in calls if TENSORRT in call)
    # the grid detector works at shorter side 120, longer at most 160
    assert trt["trt_profile_min_shapes"] == "images:1x3x16x16"
    assert trt["trt_profile_opt_shapes"] == "images:1x3x120x160"
    assert trt["trt_profile_max_shapes"] == "images:1x3x160x160"


def _detector_entry(entry: dict) -> dict:
    entry = copy.deepcopy(entry)
    for key in ("ranks", "calibration", "backbone"):
        entry.pop(key, None)
    entry |= {"id": "frames-demo", "task": "detection", "classes": ["moth"]}
    entry["preprocessing"] = {"min_side": 320, "max_side": 640, "mean": [0.5] * 3,
                              "std": [0.5] * 3}  # fmt: skip
    return entry


def test_zoo_entries_say_whether_they_detect_or_classify(tmp_path, monkeypatch, capsys) -> None:
    index = json.loads((REPO / "zoo" / "index.json").read_text())
    classifier = index["models"][0]
    assert "task" not in classifier  # an index written before detectors: still valid
    index["models"] = [classifier, _detector_entry(classifier)]
    zoo.validate_index(index, "index.json")
    assert [zoo.ZooIndex("x", index).entries[i].task for i in (0, 1)] == [
        "classification", "detection"]  # fmt: skip
    for broken, message in [
        ({"classes": None}, r"'classes' is a required property"),
        ({"preprocessing": {"input_size": [64, 64], "mean": [0] * 3, "std": [1] * 3}},
         r"'min_side' is a required property"),
        # refused; the schema's first complaint is the classifier's ranks it lacks
        ({"task": "segmentation"}, r"\$\.models\[0\]: 'ranks' is a required property"),
    ]:  # fmt: skip
        entry = _detector_entry(classifier) | broken
        entry = {k: v for k, v in entry.items() if v is not None}
        with pytest.raises(zoo.ZooError, match=message):
            zoo.validate_index({**index, "models": [entry]}, "index.json")
    written = tmp_path / "index.json"
    written.write_text(json.dumps(index))
    assert zoo_cli.main(["list", "--index", str(written)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].split()[:3] == ["nl-moths-demo", "1.0.0", "8"]
    assert listed[2].split()[:3] == ["frames-demo", "1.0.0", "-"]
