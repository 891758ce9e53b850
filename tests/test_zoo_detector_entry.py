"""``moths-zoo add`` on a detector: an entry with ``task: detection``, a safetensors
checkpoint that names nobody's disk, a detector's model card, and zoo:ID that opens it."""

from __future__ import annotations

import json

import pytest
from helpers.tiny_detector import TinyDetector, frame, trained_looking
from safetensors import safe_open

from moths_framework.cli import zoo as zoo_cli
from moths_framework.export.detector_onnx import export_detector_checkpoint
from moths_framework.export.detector_parity import PARITY_FRAMES, synthetic_frames
from moths_framework.inference import OnnxDetector
from moths_framework.model.checkpoint import SAFETENSORS_KEY
from moths_framework.model.detector_checkpoint import (
    DetectorCheckpointMeta,
    load_detector,
    write_detector_checkpoint,
)
from moths_framework.zoo.schema import validate_index

CLASSES = ("moth",)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A detector's .ckpt (recording a validation frame's path) and its ONNX export."""
    folder = tmp_path_factory.mktemp("run")
    detector = TinyDetector(score_threshold=0.4, nms_iou=0.45, max_detections=60)
    synthetic = synthetic_frames(detector.preprocessing, PARITY_FRAMES)
    model = trained_looking(detector.build(1), [frame(128, 160, seed=1), *synthetic])
    meta = DetectorCheckpointMeta.of(
        detector, CLASSES, metrics={"val/map_50": 0.75, "val/map": 0.5},
        data={"frames": 3, "val_examples": ["/home/someone/frames/1.jpg"]},
    )  # fmt: skip
    ckpt = write_detector_checkpoint(folder / "best.ckpt", model, meta, epoch=4)
    onnx_path = folder / "det.onnx"
    export_detector_checkpoint(ckpt, onnx_path, images=[])
    return ckpt, onnx_path


def test_a_detector_entry_says_what_it_is(exported, tmp_path, monkeypatch, capsys):
    ckpt, onnx_path = exported
    index = tmp_path / "zoo"
    args = ["add", str(onnx_path), "--index", str(index), "--id", "demo-detector",
            "--version", "1.0", "--checkpoint", str(ckpt)]  # fmt: skip
    assert zoo_cli.main(args) == 0
    data = json.loads((index / "index.json").read_text())
    validate_index(data, "index.json")
    (entry,) = data["models"]
    assert entry["task"] == "detection" and entry["classes"] == ["moth"]
    assert entry["detector"]["class_path"].endswith("TinyDetector")
    assert "ranks" not in entry and "calibration" not in entry
    assert entry["metrics"] == {"val/map_50": 0.75, "val/map": 0.5}
    assert entry["preprocessing"]["min_side"] == 128
    assert [f["role"] for f in entry["files"]] == ["onnx", "checkpoint"]
    # the zoo checkpoint: same weights, no pickle, no validation frame paths
    stored = index / entry["files"][1]["url"]
    with safe_open(str(stored), "pt") as f:
        header = json.loads(f.metadata()[SAFETENSORS_KEY])
    assert header["task"] == "detection" and "val_examples" not in header["data"]
    _, original, _ = load_detector(ckpt)
    _, copied, _ = load_detector(stored)
    for name, tensor in original.state_dict().items():
        assert copied.state_dict()[name].equal(tensor), name
    card = (index / "demo-detector" / "README.md").read_text()
    assert "moths-infer --detector zoo:demo-detector@1.0" in card and "`moth`" in card
    assert "ranks" not in card.lower()
    # and zoo:ID opens it as a detector
    monkeypatch.setenv("MOTHS_ZOO_INDEX", str(index / "index.json"))
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    assert OnnxDetector.from_file("zoo:demo-detector").metadata.classes == CLASSES


def test_a_classifier_checkpoint_with_a_detector_file_is_refused(exported, tmp_path, capsys):
    _, onnx_path = exported
    not_a_detector = tmp_path / "x.safetensors"
    not_a_detector.write_bytes(b"not a checkpoint")
    args = ["add", str(onnx_path), "--index", str(tmp_path / "zoo"), "--id", "d",
            "--version", "1", "--checkpoint", str(not_a_detector)]  # fmt: skip
    assert zoo_cli.main(args) == 2
    assert not (tmp_path / "zoo" / "d").exists()  # nothing left behind
