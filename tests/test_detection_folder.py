"""The detection folder: what it holds, that CSV and COCO files agree, reading it back."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers.paths import REPO

from moths_framework.evaluate.detection_folder import (
    DETECTION_CSV_COLUMNS,
    DETECTION_JSON,
    DETECTIONS_CSV,
    DETECTIONS_JSON,
    GROUND_TRUTH_JSON,
    FrameBoxes,
    is_detection_folder,
    read_detection_folder,
    write_detection_folder,
)
from moths_framework.output_folders import OutputFolderError

CLASSES = ["moth", "=beetle"]  # a formula-like name: quoted in the CSV, read back as written


def _truth(path, boxes, labels, width=640, height=480):
    return FrameBoxes(
        path,
        width,
        height,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
    )


def _predicted(path, boxes, labels, scores, width=640, height=480, error=""):
    return FrameBoxes(
        path,
        width,
        height,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(scores, dtype=np.float32),
        error,
    )


def _frames():
    truth = [
        _truth("a.jpg", [[10, 20, 50, 60], [100, 100, 140, 150]], [1, 2]),
        _truth("b.jpg", [[0, 0, 30, 30]], [1]),
        _truth("c.jpg", [], []),
    ]
    predicted = [
        _predicted(
            "a.jpg", [[10.5, 20, 50, 60.25], [1.2345678, 2, 3, 4]], [1, 2], [0.9, 0.123456789]
        ),
        _predicted("b.jpg", [], [], []),
        _predicted("c.jpg", [], [], [], error="truncated frame"),
    ]
    return truth, predicted


def _write(folder, **kwargs):
    truth, predicted = _frames()
    return write_detection_folder(
        folder,
        CLASSES,
        truth,
        predicted,
        score_threshold=0.5,
        metadata={"checkpoint": "best.ckpt", "split": "test"},
        **kwargs,
    )


def test_csv_has_every_box_and_every_frame(tmp_path):
    folder = _write(tmp_path / "pred")
    with open(folder / "detections.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [r["frame"] for r in rows] == ["a.jpg", "a.jpg", "b.jpg", "c.jpg"]
    assert rows[0] == {
        "frame": "a.jpg", "width": "640", "height": "480", "x1": "10.5", "y1": "20",
        "x2": "50", "y2": "60.25", "score": "0.9", "label": "1", "class": "moth",
        "kept": "true", "error": "",
    }  # fmt: skip
    assert rows[1]["class"] == "'=beetle" and rows[1]["kept"] == "false"
    assert rows[2]["x1"] == "" and rows[2]["error"] == ""  # no box: counted, not lost
    assert rows[3]["x1"] == "" and rows[3]["error"] == "truncated frame"


def test_coco_files_hold_the_boxes(tmp_path):
    folder = _write(tmp_path / "pred")
    truth = json.loads((folder / "ground_truth.json").read_text())
    assert [i["id"] for i in truth["images"]] == [1, 2, 3]
    assert truth["images"][0] == {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}
    assert truth["annotations"][1]["bbox"] == [100, 100, 40, 50]
    assert truth["annotations"][1]["area"] == 2000 and truth["annotations"][1]["category_id"] == 2
    assert truth["categories"] == [{"id": 1, "name": "moth"}, {"id": 2, "name": "=beetle"}]
    results = json.loads((folder / "detections.json").read_text())
    assert len(results) == 2
    assert results[0]["image_id"] == 1 and results[0]["bbox"] == [10.5, 20, 39.5, 40.25]
    assert results[0]["score"] == pytest.approx(0.9)
    described = json.loads((folder / "detection.json").read_text())
    assert described == {
        "task": "detection", "classes": CLASSES, "score_threshold": 0.5,
        "checkpoint": "best.ckpt", "split": "test",
    }  # fmt: skip


def test_read_back_equals_what_was_written(tmp_path):
    folder = _write(tmp_path / "pred")
    assert is_detection_folder(folder) and not is_detection_folder(tmp_path)
    read = read_detection_folder(folder)
    truth, predicted = _frames()
    assert read.classes == tuple(CLASSES) and read.score_threshold == 0.5
    assert read.metadata["checkpoint"] == "best.ckpt"
    assert read.errors == ["", "", "truncated frame"]
    for got, want in zip(read.truth, truth, strict=True):
        assert got.path == want.path and (got.width, got.height) == (want.width, want.height)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.labels, want.labels)
    for got, want in zip(read.predicted, predicted, strict=True):
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.labels, want.labels)


def test_replaces_only_its_own_folder(tmp_path):
    folder = _write(tmp_path / "pred")
    _write(folder)  # its own: replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError):
        _write(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_frames_that_do_not_pair_up_are_refused(tmp_path):
    truth, predicted = _frames()
    with pytest.raises(ValueError, match="out of order"):
        write_detection_folder(
            tmp_path / "p", CLASSES, truth, predicted[::-1], score_threshold=0.5, metadata={}
        )
    bad = [*predicted[:2], _predicted("c.jpg", [[0, 0, 1, 1]], [3], [0.5])]
    with pytest.raises(ValueError, match="outside 1..2"):
        write_detection_folder(
            tmp_path / "p", CLASSES, truth, bad, score_threshold=0.5, metadata={}
        )


def test_the_reference_page_names_every_file_and_column():
    text = (REPO / "docs" / "reference" / "detection-folder.md").read_text(encoding="utf-8")
    names = [*DETECTION_CSV_COLUMNS, DETECTIONS_CSV, DETECTIONS_JSON, GROUND_TRUTH_JSON]
    names.append(DETECTION_JSON)
    assert [name for name in names if f"`{name}`" not in text] == []
