"""moths-fit on a detector's config: the run folder, the checkpoint and what reads it
(moths-export --onnx, moths-predict, moths-validate, moths-test, a resumed run), the
errors of a config that mixes a classifier's and a detector's parts, and (slow) the
bar: configs/detector-dev.yaml reaches mAP@0.5 >= 0.9 on the held-out test frames,
computed here from the checkpoint, by hand and by COCOeval."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
import torch
import yaml
from faster_coco_eval import COCO, COCOeval_faster
from helpers.paths import REPO, TEST_DATA
from moths_plugin_torchvision import TorchvisionDetector
from PIL import Image, ImageOps

from moths_framework.cli.calibrate import main as calibrate
from moths_framework.cli.export import main as export
from moths_framework.cli.fit import main as fit
from moths_framework.cli.predict import main as predict
from moths_framework.cli.test import main as run_test
from moths_framework.cli.validate import main as validate
from moths_framework.data.coco import CocoError, read_coco
from moths_framework.data.frame_datamodule import FrameDataModule
from moths_framework.data.frame_dataset import FrameDataset
from moths_framework.evaluate.detection_folder import read_detection_folder
from moths_framework.inference.detector_metadata import DetectorMetadata
from moths_framework.model.detector_checkpoint import load_detector
from moths_framework.model.detector_lightning import MothsDetector
from moths_framework.train.task import ConfigTaskError, config_task

CONFIG = REPO / "configs" / "detector-dev.yaml"
FRAMES = TEST_DATA / "frames"
# The dev config at a third of its cost: small frames, two training batches.
SHORT = ["--model.detector.init_args.min_side", "120", "--model.detector.init_args.max_side",
         "160", "--model.detector.init_args.score_threshold", "0.05",
         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
         "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false"]  # fmt: skip


def _fit_args(run, *more: str) -> list[str]:
    return ["--config", str(CONFIG), "--trainer.default_root_dir", str(run), *more]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("detector") / "run"
    assert fit(_fit_args(run, *SHORT)) == 0
    return run


def _split(run) -> dict[str, list[str]]:
    with (run / "split.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    phases: dict[str, list[str]] = {}
    for row in rows:
        phases.setdefault(row["phase"], []).append(row["path"])
    return phases


def _frame_tensor(path) -> torch.Tensor:
    """The frame as displayed, float in [0, 1]: decoded here with Pillow alone."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255


def _model_boxes(ckpt, paths) -> dict[str, dict[str, np.ndarray]]:
    """The checkpoint's boxes on each frame, every box scoring at least 0.001."""
    detector, model, _ = load_detector(ckpt)
    detector.set_postprocess(model, score_threshold=0.001, nms_iou=detector.nms_iou,
                             max_detections=detector.max_detections)  # fmt: skip
    with torch.no_grad():
        found = model([_frame_tensor(p) for p in paths])
    return {str(p): {k: v.numpy() for k, v in d.items()} for p, d in zip(paths, found, strict=True)}


def test_a_detector_trains_into_a_run_folder_like_a_classifier(run):
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "split.csv", "best.ckpt",
                                               "last.ckpt", "logs"}  # fmt: skip
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["detector"]["init_args"]["name"] == "fasterrcnn_tiny"
    assert config["data"]["instances"] == "test_data/frames/instances.json"
    assert "backbone" not in config["model"] and "unfreeze" not in config
    # The frame split: every frame of the COCO file once, with its box count.
    coco = json.loads((FRAMES / "instances.json").read_text())
    boxes = {i["file_name"]: 0 for i in coco["images"]}
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    for a in coco["annotations"]:
        boxes[names[a["image_id"]]] += 1
    with (run / "split.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted((r["path"].rpartition("/")[2], int(r["boxes"])) for r in rows) == sorted(
        boxes.items()
    )
    assert {r["phase"] for r in rows} == {"train", "val", "test"}
    # Plain data only: the checkpoint loads with weights_only, weights under model.
    checkpoint = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)
    meta = checkpoint["moths"]
    assert meta["task"] == "detection" and meta["classes"] == ["moth"]
    assert meta["detector"]["init_args"]["name"] == "fasterrcnn_tiny"
    assert meta["score_threshold"] == 0.05
    assert {"val/map", "val/map_50", "val/map_75"} <= set(meta["metrics"])
    val = [p.rpartition("/")[2] for p in _split(run)["val"]]
    assert [p.rpartition("/")[2] for p in meta["data"]["val_examples"]] == val
    assert all(k.startswith("model.") for k in checkpoint["state_dict"])


def test_the_checkpoint_exports_to_onnx_unchanged(run, tmp_path, capsys):
    out = tmp_path / "detector.onnx"
    assert export(["--onnx", "--ckpt", str(run / "best.ckpt"), "--output", str(out)]) == 0
    assert "detector" in capsys.readouterr().out
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    metadata = DetectorMetadata.from_props(props, str(out))
    assert props["moths.task"] == "detection" and metadata.classes == ("moth",)
    assert metadata.score_threshold == 0.05


def test_predict_writes_the_detection_folder_of_the_test_frames(run, tmp_path, capsys):
    out = tmp_path / "predicted"
    args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt")]
    assert predict([*args, "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    folder = read_detection_folder(out)
    test_frames = _split(run)["test"]
    assert [t.path for t in folder.truth] == test_frames  # the test split by default
    assert folder.classes == ("moth",) and folder.score_threshold == 0.05
    assert folder.metadata["split"] == "test"
    # The truth is the COCO file's; the boxes are the checkpoint's own, down to 0.001.
    coco = json.loads((FRAMES / "instances.json").read_text())
    by_name = {i["file_name"]: i["id"] for i in coco["images"]}
    direct = _model_boxes(run / "best.ckpt", test_frames)
    for truth, found in zip(folder.truth, folder.predicted, strict=True):
        image_id = by_name[truth.path.rpartition("/")[2]]
        xywh = [a["bbox"] for a in coco["annotations"] if a["image_id"] == image_id]
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in xywh]).reshape(-1, 4)
        np.testing.assert_allclose(truth.boxes, expected, atol=1e-4)
        assert (truth.width, truth.height) == (320, 240)
        mine = direct[truth.path]
        assert found.scores.min(initial=1) >= 0.001
        np.testing.assert_allclose(found.boxes, mine["boxes"], atol=1e-3)
        np.testing.assert_allclose(found.scores, mine["scores"], atol=1e-5)
    assert sum(len(p.boxes) for p in folder.predicted) > 0


def test_predict_maps_boxes_of_shrunk_frames_back_to_the_frames_pixels(run, tmp_path):
    """``data.max_side 160`` halves the 320x240 frames as they are read: the boxes must
    come back in the frames' own pixels (twice what the model returned)."""
    out = tmp_path / "shrunk"
    args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt")]
    assert predict([*args, "--output", str(out), "--data.max_side", "160"]) == 0
    folder = read_detection_folder(out)
    detector, model, _ = load_detector(run / "best.ckpt")
    detector.set_postprocess(model, score_threshold=0.001, nms_iou=detector.nms_iou,
                             max_detections=detector.max_detections)  # fmt: skip
    coco = {f.file_name: f for f in read_coco(FRAMES / "instances.json").frames}
    frames = [coco[t.path.rpartition("/")[2]] for t in folder.truth]
    shrunk = FrameDataset(frames, [(1,) * len(f.boxes) for f in frames], max_side=160)
    with torch.no_grad():
        for k, found in enumerate(folder.predicted):
            image, _ = shrunk[k]
            assert image.shape[-2:] == (120, 160)
            (mine,) = model([image])
            assert (found.width, found.height) == (320, 240)
            np.testing.assert_allclose(found.boxes, mine["boxes"].numpy() * 2, atol=1e-3)


def test_validate_and_test_print_the_map(run, capsys):
    args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt"),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert validate(args) == 0
    out = capsys.readouterr().out
    assert "val/map_50" in out and "val/map_75" in out
    assert run_test(args) == 0
    out = capsys.readouterr().out
    assert "test/map_50" in out and "test/map_75" in out


def test_a_run_resumes_from_its_last_checkpoint(run, tmp_path):
    resumed = tmp_path / "resumed"
    args = _fit_args(resumed, *SHORT, "--trainer.max_epochs", "2",
                     "--ckpt_path", str(run / "last.ckpt"))  # fmt: skip
    assert fit(args) == 0
    first = torch.load(run / "last.ckpt", weights_only=True)
    second = torch.load(resumed / "last.ckpt", weights_only=True)
    assert (first["epoch"], second["epoch"]) == (0, 1)
    assert second["global_step"] == 2 * first["global_step"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--data.source", '{"class_path": "Manifest", "init_args": {"path": "m.csv"}}'],
        ["--model.backbone.class_path", "TimmBackbone"],
    ],
)
def test_a_config_mixing_classifier_and_detector_parts_is_one_line(tmp_path, capsys, extra):
    assert fit(_fit_args(tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "mixes a detector's parts, model.detector" in err
    assert extra[0].lstrip("-") in err
    assert not (tmp_path / "run").exists()


def test_config_task_reads_the_config_files_and_the_options(tmp_path):
    assert config_task(["--config", str(CONFIG)]) == "detection"
    assert config_task([f"--config={CONFIG}"]) == "detection"
    assert config_task(["--config", str(REPO / "configs" / "dev.yaml")]) == "classification"
    assert config_task(["--help"]) == "classification"
    assert config_task(["--data.instances", "x.json"]) == "detection"
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(yaml.safe_dump({"model": {"backbone": {"class_path": "TimmBackbone"}},
                                     "data": {"instances": "f.json"}}))  # fmt: skip
    with pytest.raises(ConfigTaskError, match=r"data.instances \(.*mixed.yaml\).*model.backbone"):
        config_task(["--config", str(mixed)])
    # A key set to null names nothing; a later config may add to an earlier one.
    nulled = tmp_path / "nulled.yaml"
    nulled.write_text("model:\n  backbone: null\n")
    assert config_task(["--config", str(CONFIG), "--config", str(nulled)]) == "detection"


def test_a_checkpoint_of_the_other_kind_is_one_line(run, tmp_path, capsys):
    classifier_config = ["--config", str(REPO / "configs" / "dev.yaml")]
    assert predict([*classifier_config, "--ckpt_path", str(run / "best.ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a detector's checkpoint" in err
    fake = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {}, "moths": {"format": 1, "hierarchy": {}}}, fake)
    assert predict(["--config", str(run / "config.yaml"), "--ckpt_path", str(fake)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a classifier's checkpoint" in err


def test_tune_and_calibrate_are_for_classifiers(run, tmp_path, capsys):
    assert fit(_fit_args(tmp_path / "run", "--tune", "true")) == 2
    assert "--tune searches a classifier's" in capsys.readouterr().err
    assert calibrate(["--ckpt", str(run / "best.ckpt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "moths-calibrate is for classifiers" in err


@pytest.mark.parametrize("name", ["detector-dev", "detector"])
def test_shipped_detector_configs_parse(capsys, name):
    with pytest.raises(SystemExit) as exit_:
        fit(["--config", str(REPO / "configs" / f"{name}.yaml"), "--print_config"])
    assert exit_.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["detector"]["class_path"].endswith("TorchvisionDetector")
    assert config["model"]["batchnorm_momentum"] == 0.1 and "unfreeze" not in config


def test_a_checkpoint_keeps_its_class_order_on_data_that_lists_another(tmp_path):
    coco = json.loads((FRAMES / "instances.json").read_text())
    coco["categories"].append({"id": 2, "name": "beetle"})
    coco["annotations"][0]["category_id"] = 2
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    data = FrameDataModule(tmp_path / "instances.json", images=FRAMES / "images")
    before = data.labels
    assert data.classes == ("moth", "beetle") and before[0][0] == 2 and before[0][1] == 1
    data.use_classes(("beetle", "moth", "wasp"))
    assert data.classes == ("beetle", "moth", "wasp")
    assert data.labels == [tuple(3 - k for k in labels) for labels in before]
    with pytest.raises(CocoError, match="'beetle', a class the model was not trained for"):
        data.use_classes(("moth",))


def test_batchnorm_statistics_follow_weights_trained_from_random_ones():
    """torchvision's MobileNets track BatchNorm statistics at momentum 0.01: after the dev
    config's few hundred steps they would still describe the first weights."""
    detector = TorchvisionDetector("fasterrcnn_tiny", min_side=120, max_side=160)

    def momenta(model):
        return {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert momenta(MothsDetector(detector, ["moth"]).model) == {0.1}
    assert momenta(MothsDetector(detector, ["moth"], batchnorm_momentum=None).model) == {0.01}


# --- the bar ---------------------------------------------------------------------------


def _ap50(truth: dict[str, np.ndarray], found: dict[str, dict[str, np.ndarray]]) -> float:
    """COCO's average precision at IoU 0.5 for one class, by hand: detections ranked by
    score over all frames, each matched greedily to the unmatched true box it overlaps
    most (IoU >= 0.5), precision made monotone, averaged at 101 recall points."""
    ranked = sorted(
        ((float(s), path, box) for path, d in found.items()
         for s, box in zip(d["scores"], d["boxes"], strict=True)),
        key=lambda item: -item[0],
    )  # fmt: skip
    used = {path: np.zeros(len(boxes), bool) for path, boxes in truth.items()}
    hits = []
    for _, path, box in ranked:
        gt = truth[path]
        if not len(gt):
            hits.append(False)
            continue
        x1 = np.maximum(gt[:, 0], box[0])
        y1 = np.maximum(gt[:, 1], box[1])
        x2 = np.minimum(gt[:, 2], box[2])
        y2 = np.minimum(gt[:, 3], box[3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        areas = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        iou = inter / (areas + (box[2] - box[0]) * (box[3] - box[1]) - inter)
        iou[used[path]] = -1
        best = int(np.argmax(iou))
        hit = iou[best] >= 0.5
        if hit:
            used[path][best] = True
        hits.append(bool(hit))
    positives = sum(len(b) for b in truth.values())
    tp = np.cumsum(hits)
    recall = tp / positives
    precision = tp / np.arange(1, len(hits) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    at = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in at]))


@pytest.mark.slow
def test_the_dev_detector_reaches_map50_0_9_on_the_held_out_test_frames(tmp_path, capsys):
    run = tmp_path / "run"
    assert fit(_fit_args(run, "--trainer.enable_progress_bar", "false")) == 0
    test_frames = _split(run)["test"]
    assert len(test_frames) >= 10
    coco = json.loads((FRAMES / "instances.json").read_text())
    ids = {i["file_name"]: i["id"] for i in coco["images"]}
    truth = {}
    for path in test_frames:
        xywh = [a["bbox"] for a in coco["annotations"] if a["image_id"] == ids[path[-10:]]]
        truth[path] = np.array([[x, y, x + w, y + h] for x, y, w, h in xywh]).reshape(-1, 4)
    assert sum(len(b) for b in truth.values()) >= 80
    ap50 = _ap50(truth, _model_boxes(run / "best.ckpt", test_frames))
    # moths-predict's folder, scored by COCOeval itself, agrees.
    out = tmp_path / "predicted"
    args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt")]
    assert predict([*args, "--output", str(out)]) == 0
    gt = COCO(str(out / "ground_truth.json"))
    evaluation = COCOeval_faster(gt, gt.loadRes(str(out / "detections.json")), "bbox")
    evaluation.params.maxDets = [1, 10, 500]
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    coco_ap50 = float(evaluation.stats[1])
    print(f"test frames {len(test_frames)}: AP@0.5 by hand {ap50:.4f}, COCOeval {coco_ap50:.4f}")
    assert ap50 >= 0.9 and coco_ap50 >= 0.9
    assert abs(ap50 - coco_ap50) < 0.01
