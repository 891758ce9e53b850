"""Pipeline files: read and checked (one-line errors), and run offline by moths-infer --pipeline.

The offline run's oracle is the pixels (helpers.pipeline_models): the grid detector's
boxes are the cells painted on a dark sheet, a grey crop is a moth of species
``Aus alpha``, a green one (a leaf) a ``nonmoth`` the classifier never sees.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers.in_process import run_console_script
from helpers.onnx_detectors import GRID, grid_detector, paint_cells, save_frame, sheet
from helpers.pipeline_models import (
    BRIGHT_SPECIES,
    LEAF,
    brightness_classifier,
    leaf_filter,
    pipeline_file,
)

from moths_framework.inference.pipeline_file import PipelineFileError, read_pipeline_file
from moths_framework.inference.pipeline_models import load_pipeline

CELL = (640 // GRID[0], 480 // GRID[1])
GREY_CELLS = [(2, 1), (10, 6)]
LEAF_CELL = (15, 3)


def cell_box(column: int, row: int) -> tuple[float, ...]:
    return (column * CELL[0], row * CELL[1], (column + 1) * CELL[0], (row + 1) * CELL[1])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pipeline-file")
    pixels = paint_cells(sheet(), GREY_CELLS)
    column, row = LEAF_CELL
    pixels[row * CELL[1] : (row + 1) * CELL[1], column * CELL[0] : (column + 1) * CELL[0]] = LEAF
    return {
        "classifier": brightness_classifier(folder / "bright.onnx"),
        "filter": leaf_filter(folder / "leaf-filter.onnx"),
        "detector": grid_detector(folder / "grid.onnx"),
        "frame": save_frame(folder / "frame.png", pixels),
        "folder": folder,
    }


# --- reading ---


def test_a_stage_may_be_its_model_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "My Pipeline.yaml"
    path.write_text(
        "classifier: models/cls.onnx\n"
        "detector: {model: zoo:some-detector, min_score: 0.3, crop_margin: 4}\n"
        "filter: {model: /abs/filter.onnx, threshold: 0.7}\n"
    )
    spec = read_pipeline_file(path)
    assert spec.slug == "my-pipeline"
    assert spec.classifier.model == str(tmp_path / "sub" / "models" / "cls.onnx")
    assert spec.detector.model == "zoo:some-detector"
    assert (spec.detector.min_score, spec.detector.max_detections) == (0.3, None)
    assert spec.detector.crop_margin == 4
    assert (spec.filter.model, spec.filter.positive, spec.filter.threshold) == (
        "/abs/filter.onnx", "moth", 0.7
    )  # fmt: skip
    assert (spec.name, spec.version) == (None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detector: zoo:d\n", "top level: a pipeline needs a classifier: {model: PATH|zoo:ID}"),
        ("classifier: c.onnx\nfilters: f.onnx\n", "top level: Additional properties are not "
         "allowed ('filters' was unexpected); the fields are name, slug"),
        ("classifier: {model: c.onnx, thresholds: {species: 1.5}}\n",
         "classifier.thresholds.species: 1.5 is greater than the maximum of 1"),
        ("classifier: c.onnx\ndetector: {min_score: 0.2}\n",
         "detector: 'model' is a required property"),
        ("classifier: c.onnx\nslug: Not A Slug\n", "slug: 'Not A Slug' does not match"),
        ("classifier: c.onnx\ndetector: 3\n", "detector: 3 is not of type 'object': give "
         "{model: PATH|zoo:ID, ...} or just the model"),
        ("classifier: [c.onnx\n", "not YAML (line 2)"),
        ("- just\n- a list\n", "top level: ['just', 'a list'] is not of type 'object'"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_naming_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PipelineFileError) as raised:
        read_pipeline_file(path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_filter_without_its_positive_class_is_named(files: dict[str, Path]) -> None:
    path = pipeline_file(
        files["folder"] / "bad-filter.yaml", files["classifier"], None, None,
        f"filter: {{model: '{files['filter']}', positive: insect}}",
    )  # fmt: skip
    with pytest.raises(PipelineFileError) as raised:
        load_pipeline(read_pipeline_file(path), "cpu")
    assert str(raised.value) == (
        f"{path}: filter.positive: 'insect' is not a class of {files['filter']} "
        "(species: Other, moth, nonmoth)"
    )


def test_moths_serve_refuses_a_bad_pipeline_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("classifier: {model: missing.onnx}\n")
    code, output = run_console_script("moths-serve", ["--pipeline", str(path)])
    assert code == 2
    (line,) = [line for line in output.splitlines() if line.strip()]
    assert line.startswith(f"moths-serve: error: {path}: classifier: ") and "missing.onnx" in line


# --- moths-infer --pipeline ---


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def box_of(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))


def test_moths_infer_runs_the_file_and_writes_the_filter_s_columns(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path = pipeline_file(
        tmp_path / "full.yaml", files["classifier"], files["detector"], files["filter"]
    )
    out = tmp_path / "detections.csv"
    code, output = run_console_script(
        "moths-infer", ["--pipeline", str(path), str(files["frame"]), "--output", str(out),
                        "--no-progress"],
    )  # fmt: skip
    assert code == 0, output
    assert "3 detections found, 2 moths classified" in output
    columns, rows = read_rows(out)
    assert columns[11:15] == ["filter_class", "filter_score", "species", "species_prob"]
    by_box = {box_of(row): row for row in rows}
    assert sorted(by_box) == sorted(cell_box(*c) for c in [*GREY_CELLS, LEAF_CELL])
    leaf = by_box[cell_box(*LEAF_CELL)]
    assert (leaf["filter_class"], leaf["species"], leaf["prediction"]) == ("nonmoth", "", "")
    assert float(leaf["filter_score"]) < 0.01
    for cell in GREY_CELLS:
        row = by_box[cell_box(*cell)]
        assert (row["filter_class"], row["species"]) == ("moth", BRIGHT_SPECIES)
        assert float(row["filter_score"]) > 0.5


def test_command_line_options_win_over_the_file(files: dict[str, Path], tmp_path: Path) -> None:
    path = pipeline_file(
        tmp_path / "p.yaml", files["classifier"], None, None,
        f"detector: {{model: '{files['detector']}', min_score: 0.5}}",
    )  # fmt: skip
    out = tmp_path / "detections.csv"
    args = ["--pipeline", str(path), str(files["frame"]), "--output", str(out), "--no-progress"]
    # the leaf cell scores 200/255 = 0.78 on the grid detector, the grey ones 0.88
    assert run_console_script("moths-infer", [*args, "--min-score", "0.8"])[0] == 0
    assert sorted(box_of(r) for r in read_rows(out)[1]) == sorted(cell_box(*c) for c in GREY_CELLS)
    assert run_console_script("moths-infer", args)[0] == 0
    assert len(read_rows(out)[1]) == 3
    code, output = run_console_script("moths-infer", [*args, "--model", str(files["classifier"])])
    assert code == 2 and "give --pipeline, or --detector and --model: not both" in output


def test_a_pipeline_without_a_detector_classifies_each_whole_frame(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path = pipeline_file(tmp_path / "whole.yaml", files["classifier"])
    out = tmp_path / "detections.csv"
    args = ["--pipeline", str(path), str(files["frame"]), "--output", str(out), "--no-progress"]
    assert run_console_script("moths-infer", args)[0] == 0
    (row,) = read_rows(out)[1]
    assert box_of(row) == (0, 0, 640, 480) and row["detection_class"] == "whole image"
    assert row["species"] == "Cus delta"  # a frame that is mostly dark sheet
