"""moths-infer --detector: trap frames to detections.csv, one row per detection.

The grid detector (helpers/onnx_detectors.py) boxes exactly the bright cells
painted on a frame, so every expected box, count and crop is known in advance;
crops are checked against the frame's pixels cut with numpy, predictions
against OnnxClassifier run on those independently cut crops.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.calling_threads import calling_threads
from helpers.onnx_detectors import (
    GRID,
    grid_cells,
    grid_detector,
    paint_cells,
    save_frame,
    sheet,
)
from helpers.onnx_models import export_model, tiny_net
from helpers.onnx_models import metadata as classifier_metadata
from PIL import Image

from moths_framework.cli.infer import main
from moths_framework.inference import OnnxClassifier
from moths_framework.inference.detector import OnnxDetector
from moths_framework.inference.writers import prediction_columns, prediction_record

FRAME_COLUMNS = [
    "path", "width", "height", "detection",
    "x1", "y1", "x2", "y2", "detection_score", "detection_class", "crop",
]  # fmt: skip
SCALE = 4  # the frames are 640 x 480, the grid detector works at 160 x 120
CELL = (32, 48)  # a grid cell on the frame, (width, height)


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return grid_detector(tmp_path_factory.mktemp("det") / "grid.onnx")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cls") / "tiny.onnx"
    return export_model(tiny_net(), path, classifier_metadata())


def run(detector: Path, *args: str) -> int:
    return main(["--detector", str(detector), "--no-progress", *[str(a) for a in args]])


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def cell_box(column: int, row: int) -> tuple[float, ...]:
    return (column * CELL[0], row * CELL[1], (column + 1) * CELL[0], (row + 1) * CELL[1])


def box_of(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))


def test_frames_with_0_1_and_200_moths(detector: Path, tmp_path: Path, capsys) -> None:
    frames = tmp_path / "night"
    frames.mkdir()
    save_frame(frames / "a_empty.png", sheet())
    save_frame(frames / "b_one.jpg", paint_cells(sheet(), [(7, 3)]))
    every = [(c, r) for r in range(GRID[1]) for c in range(GRID[0])]
    save_frame(frames / "c_full.png", paint_cells(sheet(), every))
    out = tmp_path / "detections.csv"
    assert run(detector, frames, "--output", out) == 0
    columns, rows = read_rows(out)
    assert columns == [*FRAME_COLUMNS, "error"]  # no --model: no classifier columns
    by_frame = {name: [r for r in rows if r["path"].endswith(name)] for name in
                ("a_empty.png", "b_one.jpg", "c_full.png")}  # fmt: skip
    (empty,) = by_frame["a_empty.png"]  # counted, not lost: one row, box cells empty
    assert (empty["width"], empty["height"], empty["error"]) == ("640", "480", "")
    assert all(empty[k] == "" for k in ("detection", "x1", "y1", "x2", "y2", "detection_score"))
    (one,) = by_frame["b_one.jpg"]
    assert one["detection"] == "1" and box_of(one) == pytest.approx(cell_box(7, 3))
    assert one["detection_class"] == "moth" and float(one["detection_score"]) > 0.8
    full = by_frame["c_full.png"]
    assert len(full) == 200 and [r["detection"] for r in full] == [str(i) for i in range(1, 201)]
    assert {box_of(r) for r in full} == {tuple(b) for b in grid_cells(SCALE).tolist()}
    scores = [float(r["detection_score"]) for r in full]
    assert scores == sorted(scores, reverse=True)
    printed = capsys.readouterr().out
    assert "3 of 3 frames searched, 0 errors; 201 detections found (1 frame with none)" in printed


def test_a_broken_frame_is_an_error_row_and_the_rest_go_on(detector, tmp_path) -> None:
    good = save_frame(tmp_path / "good.jpg", paint_cells(sheet(), [(1, 1)]))
    data = save_frame(tmp_path / "whole.jpg", paint_cells(sheet(), [(2, 2)])).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "d.csv"
    frames = [tmp_path / "truncated.jpg", tmp_path / "missing.jpg", good]
    assert run(detector, *frames, "--output", out) == 0
    rows = read_rows(out)[1]
    assert [Path(r["path"]).name for r in rows] == ["truncated.jpg", "missing.jpg", "good.jpg"]
    assert "truncated" in rows[0]["error"] and rows[0]["width"] == rows[0]["x1"] == ""
    assert "missing.jpg" in rows[1]["error"]
    assert rows[2]["error"] == "" and box_of(rows[2]) == pytest.approx(cell_box(1, 1))
    assert run(detector, tmp_path / "truncated.jpg", "--output", out) == 1  # nothing searched


def test_crops_come_from_the_full_frame_with_a_clamped_margin(detector, tmp_path) -> None:
    pixels = paint_cells(sheet(), [(0, 0), (19, 9), (5, 5)])  # two corners and one inside
    frame = save_frame(tmp_path / "frame.png", pixels)
    out, crops = tmp_path / "d.csv", tmp_path / "crops"
    args = ["--output", out, "--crops", crops, "--crop-margin", "10"]
    assert run(detector, frame, *args) == 0
    rows = read_rows(out)[1]
    expected = {(0, 0, 42, 58), (598, 422, 640, 480), (150, 230, 202, 298)}  # by hand
    seen = set()
    for row in rows:
        crop = np.asarray(Image.open(row["crop"]))
        left, top, right, bottom = next(
            b for b in expected if b[0] <= float(row["x1"]) and b[2] >= float(row["x2"])
            and b[1] <= float(row["y1"]) and b[3] >= float(row["y2"])
        )  # fmt: skip
        seen.add((left, top, right, bottom))
        assert crop.shape == (bottom - top, right - left, 3)
        cut = pixels[top:bottom, left:right].astype(int)
        assert np.abs(crop.astype(int) - cut).mean() < 3  # JPEG-saved, else the same pixels
    assert seen == expected
    names = sorted(p.name for p in crops.iterdir() if not p.name.startswith("."))
    assert names == ["000001_frame_001.jpg", "000001_frame_002.jpg", "000001_frame_003.jpg"]
    assert {Path(r["crop"]).name for r in rows} == set(names)
    assert run(detector, frame, *args) == 0  # its own folder: replaced


def test_a_rotated_exif_frame_gives_boxes_and_crops_as_shown(detector, tmp_path) -> None:
    shown = paint_cells(sheet(), [(17, 2)])  # bright upper half, dimmer lower half
    frame = save_frame(tmp_path / "rotated.jpg", shown, orientation=6)
    out, crops = tmp_path / "d.csv", tmp_path / "crops"
    assert run(detector, frame, "--output", out, "--crops", crops) == 0
    (row,) = read_rows(out)[1]
    assert (row["width"], row["height"]) == ("640", "480")
    assert box_of(row) == pytest.approx(cell_box(17, 2))
    crop = np.asarray(Image.open(row["crop"]), dtype=float)
    assert crop.shape == (48, 32, 3)
    upper, lower = crop[:20].mean(), crop[28:].mean()
    assert abs(upper - 240) < 6 and abs(lower - 210) < 6  # upright, as shown


@pytest.mark.parametrize(
    ("args", "scores"),
    [
        ([], [0.82, 0.71, 0.59]),  # the file's score threshold, 0.5
        (["--min-score", "0.65"], [0.82, 0.71]),
        (["--max-detections", "2"], [0.82, 0.71]),
        (["--min-score", "0.3", "--max-detections", "4"], [0.82, 0.71, 0.59, 0.47]),
    ],
)
def test_min_score_and_max_detections_cut(detector, tmp_path, args, scores) -> None:
    levels = {(2, 2): 224, (4, 4): 196, (6, 6): 166, (8, 8): 135, (10, 8): 80}
    # at the detector's working size, so no resize blurs the cells
    frame = save_frame(tmp_path / "f.png", paint_cells(sheet(160, 120), levels))
    out = tmp_path / "d.csv"
    assert run(detector, frame, "--output", out, *args) == 0
    found = [float(r["detection_score"]) for r in read_rows(out)[1]]
    # a cell's score is its mean brightness: (level + level - 30) / 2 / 255
    assert found == pytest.approx(scores, abs=0.005)


def test_the_classifier_columns_are_moths_infers(detector, classifier, tmp_path) -> None:
    pixels = paint_cells(sheet(), {(3, 3): 240, (12, 6): 180})
    frame = save_frame(tmp_path / "f.png", pixels)
    out = tmp_path / "d.csv"
    assert run(detector, frame, "--model", classifier, "--output", out, "--crop-margin", 4) == 0
    columns, rows = read_rows(out)
    ranks = OnnxClassifier.from_file(classifier).hierarchy.ranks
    assert columns == [*FRAME_COLUMNS, *prediction_columns(ranks)[1:]]
    assert [r["crop"] for r in rows] == ["", ""]  # no --crops
    # the oracle: the classifier on crops cut here, by hand, from the frame's pixels
    crops = [Image.fromarray(pixels[140:196, 92:132]), Image.fromarray(pixels[284:340, 380:420])]
    expected = OnnxClassifier.from_file(classifier).predict(crops)
    for row, prediction in zip(rows, expected, strict=True):
        record = prediction_record(prediction, ranks)
        for column in prediction_columns(ranks)[1:-1]:
            value = record[column]
            if isinstance(value, float):
                assert float(row[column]) == pytest.approx(value, abs=1e-6), column
            else:
                assert row[column] == {True: "true", False: "false"}.get(value, value), column


def test_json_lines_carry_top_k(detector, classifier, tmp_path) -> None:
    frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(3, 3)]))
    out = tmp_path / "d.jsonl"
    args = ["--model", classifier, "--output", out, "--top-k", "2"]
    assert run(detector, frame, *args) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["detection"] == 1 and record["x1"] == 96.0 and record["crop"] is None
    assert [len(v) for v in record["top_k"].values()] == [2, 2, 2, 2]


@pytest.fixture
def zoo_index(detector, classifier, tmp_path, monkeypatch) -> Path:
    """An index with the grid detector (task: detection) and a classifier."""
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))

    def file(path: Path) -> dict:
        data = path.read_bytes()
        return {"role": "onnx", "url": path.as_uri(), "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip

    common = {
        "version": "1.0", "metrics": {}, "training_data": {}, "license": "CC0-1.0",
        "citation": "", "region": "NL", "framework_version": "0",
        "created": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    entries = [
        {**common, "id": "grid-detector", "task": "detection", "files": [file(detector)],
         "classes": ["moth"], "preprocessing": {"min_side": 120, "max_side": 160,
         "fixed_size": None, "mean": [0.5] * 3, "std": [0.5] * 3}},
        {**common, "id": "tiny-classifier", "files": [file(classifier)], "ranks": {"species": 6},
         "preprocessing": {"input_size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
         "calibration": {"calibrated": False, "temperature": {}}},
    ]  # fmt: skip
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"schema": 1, "models": entries}))
    monkeypatch.setenv("MOTHS_ZOO_INDEX", str(index))
    return index


def test_a_zoo_detector_by_its_id(zoo_index, tmp_path) -> None:
    frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(4, 4)]))
    out = tmp_path / "d.csv"
    args = ["--model", "zoo:tiny-classifier", "--output", str(out)]
    assert main(["--detector", "zoo:grid-detector", str(frame), *args, "--no-progress"]) == 0
    (row,) = read_rows(out)[1]
    assert box_of(row) == pytest.approx(cell_box(4, 4)) and row["species"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--detector", "{cls}"], "is not a moths-export detector: moths.task is absent: it is "
         "a classifier; open it as one (OnnxClassifier, moths-infer --model)"),
        (["--model", "{det}"], "is a detection model (moths.task = detection), not a classifier; "
         "open it as a detector (OnnxDetector, moths-infer --detector)"),
        (["--detector", "zoo:tiny-classifier"], "zoo model tiny-classifier@1.0 is a "
         "classification model, not a detection model"),
        (["--model", "zoo:grid-detector"], "zoo model grid-detector@1.0 is a detection model, "
         "not a classification model"),
        (["--detector", "nowhere.onnx"], "model file nowhere.onnx not found"),
        (["--detector", "{det}", "--crop-margin", "-1"], "--crop-margin must be >= 0"),
        (["--detector", "{det}", "--min-score", "2"], "--min-score must be in [0, 1]"),
        (["--detector", "{det}", "--max-detections", "0"], "--max-detections must be at least 1"),
        (["--model", "{cls}", "--crops", "{tmp}/c"], "--crops work on trap frames: add --detector"),
        ([], "give --model (classify images), --detector (trap frames), or both"),
        (["--detector", "{det}", "--crops", "{tmp}/theirs"], "theirs is not a folder moths-infer"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(zoo_index, detector, classifier, tmp_path, capsys, args, message):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "holiday.jpg").write_bytes(b"mine")
    frame = save_frame(tmp_path / "f.png", sheet())
    filled = [a.format(cls=classifier, det=detector, tmp=tmp_path) for a in args]
    out = tmp_path / "o.csv"
    assert main([str(frame), *filled, "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and (tmp_path / "theirs" / "holiday.jpg").read_bytes() == b"mine"


@pytest.mark.parametrize("workers", [None, 3])
def test_decode_workers_is_the_number_of_frames_read_at_once(
    detector, tmp_path, monkeypatch, workers
) -> None:
    """By default one frame is read ahead on the CPU; --decode-workers N reads N at once,
    and the rows stay in input order."""
    seen = calling_threads(monkeypatch, OnnxDetector, "load")
    cells = [[(i % GRID[0], 1)] for i in range(8)]
    frames = [
        save_frame(tmp_path / f"{i}.png", paint_cells(sheet(), c)) for i, c in enumerate(cells)
    ]
    out = tmp_path / "d.csv"
    extra = [] if workers is None else ["--decode-workers", str(workers)]
    assert run(detector, *frames, "--output", out, *extra) == 0
    assert len(seen) == (workers or 1)
    rows = read_rows(out)[1]
    assert [Path(r["path"]).name for r in rows] == [f"{i}.png" for i in range(8)]
    assert [box_of(r) for r in rows] == [pytest.approx(cell_box(*c[0])) for c in cells]
