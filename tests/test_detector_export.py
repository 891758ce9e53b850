"""A detector's checkpoint and its export: one self-describing ONNX file, in parity."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers.tiny_detector import TinyDetector, frame, trained_looking

from moths_framework.cli import export as export_cli
from moths_framework.export import ExportError
from moths_framework.export.detector_onnx import export_detector_onnx
from moths_framework.export.detector_parity import PARITY_FRAMES, _match, synthetic_frames
from moths_framework.inference.detector_metadata import DetectorMetadata
from moths_framework.inference.metadata import ModelFormatError, ModelMetadata
from moths_framework.model.checkpoint import CheckpointError, read_weights
from moths_framework.model.detection_graph import DetectionGraph
from moths_framework.model.detector_checkpoint import (
    DetectorCheckpointMeta,
    checkpoint_task,
    load_detector,
    write_detector_checkpoint,
)

CLASSES = ("moth", "caddisfly")
FRAMES = [frame(128, 160, seed=1), frame(160, 128, seed=2)]  # two sizes
UNSEEN = frame(144, 208, seed=3)  # a size neither the trace nor the parity check saw


@pytest.fixture(scope="module")
def detector_model():
    detector = TinyDetector(score_threshold=0.4, nms_iou=0.45, max_detections=60)
    model = detector.build(len(CLASSES))
    # tuned to every frame the tests show it: the parity frames of moths-export included
    synthetic = synthetic_frames(detector.preprocessing, PARITY_FRAMES)
    return detector, trained_looking(model, [*FRAMES, UNSEEN, *synthetic])


@pytest.fixture(scope="module")
def checkpoint(detector_model, tmp_path_factory):
    detector, model = detector_model
    meta = DetectorCheckpointMeta.of(
        detector, CLASSES, metrics={"val/map_50": 0.5}, data={"frames": 3}, score_threshold=0.3
    )
    return write_detector_checkpoint(tmp_path_factory.mktemp("run") / "det.ckpt", model, meta, 7)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_a_checkpoint_keeps_the_detector_classes_and_weights(detector_model, tmp_path, suffix):
    detector, model = detector_model
    meta = DetectorCheckpointMeta.of(detector, CLASSES, data={"val_examples": ["/a/b.jpg"]})
    path = write_detector_checkpoint(tmp_path / f"det{suffix}", model, meta)
    assert checkpoint_task(path) == "detection"
    rebuilt, loaded, read = load_detector(path)
    assert isinstance(rebuilt, TinyDetector) and rebuilt.spec() == detector.spec()
    assert read.classes == CLASSES and read.preprocessing == detector.preprocessing
    assert (read.score_threshold, read.nms_iou, read.max_detections) == (0.4, 0.45, 60)
    # a zoo file names nobody's disk
    assert read.val_examples == ([] if suffix == ".safetensors" else ["/a/b.jpg"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(CheckpointError, match=r"is a detection checkpoint .*not a classifier's"):
        read_weights(path)


def test_the_onnx_file_says_what_it_is(checkpoint, tmp_path, capsys):
    out = tmp_path / "det.onnx"
    assert export_cli.main(["--onnx", "--ckpt", str(checkpoint), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and "detector)" in printed
    assert "parity on 16 synthetic frames (16 sizes)" in printed  # no frames recorded
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["moths.format"] == "1" and props["moths.task"] == "detection"
    assert json.loads(props["moths.classes"]) == list(CLASSES)
    assert json.loads(props["moths.preprocessing"]) == {
        "min_side": 128, "max_side": 160, "fixed_size": None,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    }  # fmt: skip
    # the checkpoint's threshold (0.3), not the spec's (0.4): it may be tuned after training
    assert (props["moths.score_threshold"], props["moths.nms_iou"]) == ("0.3", "0.45")
    assert (props["moths.max_detections"], props["moths.precision"]) == ("60", "fp32")
    card = json.loads(props["moths.model_card"])
    assert card["detector"]["class_path"] == "helpers.tiny_detector.TinyDetector"
    assert (card["classes"], card["epoch"], card["task"]) == (2, 7, "detection")
    assert card["validation_metrics"] == {"val/map_50": 0.5}
    assert card["training_data"] == {"frames": 3}
    metadata = DetectorMetadata.from_props(props, str(out))
    assert metadata.class_name(2) == "caddisfly" and metadata.max_detections == 60
    with pytest.raises(ModelFormatError, match="is a detection model .*not a classifier"):
        ModelMetadata.from_props(props, str(out))


def _onnx_boxes(path, image):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    assert [i.name for i in inputs] == ["images"] and inputs[0].shape[2:] == ["height", "width"]
    assert [o.name for o in outputs] == ["boxes", "scores", "labels"]
    return session.run(None, {"images": image[None].numpy()})


def test_onnx_runtime_finds_pytorchs_boxes_on_frames_of_any_size(detector_model, tmp_path):
    detector, model = detector_model
    out = tmp_path / "det.onnx"
    result = export_detector_onnx(detector, model, CLASSES, out, FRAMES, parity_min_score=0.0)
    assert result.parity.frames == 2 and result.parity.sizes == 2 and result.parity.boxes > 20
    assert result.parity.max_box_diff <= 1.0 and result.parity.max_score_diff <= 1e-4
    inner = TinyDetector(score_threshold=0.0, nms_iou=0.45, max_detections=60).build(2)
    inner.load_state_dict(model.state_dict())  # the graph cuts at no score
    graph = DetectionGraph(inner.eval(), detector.preprocessing)
    for image in [*FRAMES, UNSEEN]:
        boxes, scores, labels = _onnx_boxes(out, image)
        assert (boxes.dtype, scores.dtype, labels.dtype) == (np.float32, np.float32, np.int64)
        with torch.no_grad():
            expected = [t.numpy() for t in graph(image[None])]
        assert len(boxes) == len(expected[0]) > 10
        for box, score, label in zip(boxes, scores, labels, strict=True):  # ties may swap order
            twins = (np.abs(expected[0] - box).max(1) <= 1.0) & (expected[2] == label)
            assert (np.abs(expected[1][twins] - score) <= 1e-4).any(), (box, score, label)
        h, w = image.shape[1:]  # the frame's own pixels, not the model's resized ones
        assert boxes[:, 2].max() <= w and boxes[:, 3].max() <= h and boxes[:, 2].max() > 0.8 * w
    assert model.roi_heads.score_thresh == 0.4  # the caller's model is left as it was


class ShiftedWhenTraced(TinyDetector):
    """Its traced graph moves every box 3 px: what parity is there to catch."""

    def build(self, num_classes):
        model = super().build(num_classes)
        postprocess = model.transform.postprocess

        def shifted(result, image_sizes, original_sizes):
            result = postprocess(result, image_sizes, original_sizes)
            if torch.jit.is_tracing():
                result = [{**r, "boxes": r["boxes"] + 3} for r in result]
            return result

        model.transform.postprocess = shifted
        return model


def test_a_graph_that_disagrees_with_pytorch_is_refused_and_not_written(tmp_path):
    detector = ShiftedWhenTraced()
    model = trained_looking(detector.build(1), FRAMES)
    out = tmp_path / "det.onnx"
    with pytest.raises(ExportError) as err:
        export_detector_onnx(detector, model, ["moth"], out, FRAMES, parity_min_score=0.0)
    message = str(err.value)
    assert "\n" not in message and message.endswith("; nothing written")
    assert message.startswith("the exported detector does not match PyTorch on frame 1 (160x128)")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_no_box_above_the_threshold_is_no_parity(detector_model, tmp_path):
    detector, model = detector_model
    with pytest.raises(ExportError, match="no box scores at least 1 on the 2 frames"):
        export_detector_onnx(detector, model, CLASSES, tmp_path / "d.onnx", FRAMES,
                             parity_min_score=1.0)  # fmt: skip


def test_ties_at_a_cut_are_the_only_boxes_that_may_go_unmatched():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70]], dtype=np.float32)
    scores = np.array([0.9, 0.6, 0.30002], dtype=np.float32)
    labels = np.array([1, 1, 2])
    torch_side = (boxes, scores, labels)
    assert _match(torch_side, torch_side, 0.5, 100, 0.0).problem is None
    moved = (boxes + np.array([0, 0, 0, 1.5], dtype=np.float32), scores, labels)
    assert "ONNX Runtime 3; 6 have no counterpart" in _match(torch_side, moved, 0.5, 100, 0).problem
    # the last box ties (within 1e-4) with the threshold 0.3: ONNX may keep or drop it
    dropped = (boxes[:2], scores[:2], labels[:2])
    tied = _match(torch_side, dropped, 0.5, 100, 0.3)
    assert (tied.problem, tied.matched, tied.ties) == (None, 2, 1)
    # ... but not with a threshold it is clearly above
    assert "PyTorch gives 3 boxes" in _match(torch_side, dropped, 0.5, 100, 0.2).problem


def test_moths_export_refuses_classifier_options_for_a_detector(checkpoint, tmp_path, capsys):
    args = ["--onnx", "--ckpt", str(checkpoint), "--output", str(tmp_path / "d.onnx"), "--fp16"]
    assert export_cli.main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"moths-export: error: {checkpoint} is a detector's checkpoint; "
        "for classifiers only: --fp16"
    )
