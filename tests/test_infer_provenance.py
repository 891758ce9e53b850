"""moths-infer writes a run.json beside its CSV (images) and its detections.csv (--detector)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers.onnx_detectors import grid_detector, paint_cells, save_frame, sheet
from helpers.onnx_models import export_model, save_image, tiny_net
from helpers.onnx_models import metadata as classifier_metadata
from helpers.pipeline_models import brightness_classifier, leaf_filter, pipeline_file

from moths_framework.cli.infer import main


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cls") / "tiny.onnx"
    return export_model(tiny_net(), path, classifier_metadata())


def _record(output: Path) -> dict:
    return json.loads(output.with_name(output.name + ".run.json").read_text(encoding="utf-8"))


def test_images_csv_has_its_run(classifier, tmp_path) -> None:
    image = save_image(tmp_path / "a.png")
    species = tmp_path / "list.txt"
    out = tmp_path / "p.csv"
    species.write_text(f"{classifier_metadata().hierarchy.classes('species')[0]}\n")
    args = [str(image), "--model", str(classifier), "--output", str(out), "--no-progress"]
    args += ["--threshold", "0.7", "--species-list", str(species), "--mask-mode", "renormalize"]
    assert main(args) == 0
    record = _record(out)
    assert record["command"] == "moths-infer" and record["argv"] == args
    assert record["output"]["sha256"] == _sha256(out)
    [model] = record["models"]
    assert (model["role"], model["sha256"]) == ("classifier", _sha256(classifier))
    settings = record["settings"]["classifier"]
    assert settings["thresholds"]["species"] == 0.7
    assert settings["mask_mode"] == "renormalize"
    assert settings["species_list"]["sha256"] == _sha256(species)
    assert record["settings"]["images"] == 1
    assert main(args) == 0  # moths-infer overwrites its own run.json
    assert _record(out)["run_id"] != record["run_id"]


def test_detections_csv_has_its_run(classifier, tmp_path) -> None:
    detector = grid_detector(tmp_path / "grid.onnx")
    frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(3, 3)]))
    out = tmp_path / "detections.csv"
    args = ["--detector", str(detector), "--model", str(classifier), str(frame)]
    assert main([*args, "--output", str(out), "--no-progress", "--min-score", "0.3"]) == 0
    record = _record(out)
    roles = {m["role"]: m["sha256"] for m in record["models"]}
    assert roles == {"detector": _sha256(detector), "classifier": _sha256(classifier)}
    assert record["settings"]["detector"]["min_score"] == 0.3


def test_a_run_json_it_did_not_write_is_kept(classifier, tmp_path, capsys) -> None:
    image = save_image(tmp_path / "a.png")
    out = tmp_path / "p.csv"
    mine = tmp_path / "p.csv.run.json"
    mine.write_text("my notes", encoding="utf-8")
    args = [str(image), "--model", str(classifier), "--output", str(out), "--no-progress"]
    assert main(args) == 2
    assert "p.csv.run.json exists and moths-infer did not write it" in capsys.readouterr().err
    assert mine.read_text(encoding="utf-8") == "my notes"


def test_a_pipeline_file_and_its_filter_are_recorded(tmp_path) -> None:
    classifier = brightness_classifier(tmp_path / "bright.onnx")
    moth_filter = leaf_filter(tmp_path / "leaf.onnx")
    detector = grid_detector(tmp_path / "grid.onnx")
    pipeline = pipeline_file(tmp_path / "p.yaml", classifier, detector, moth_filter)
    frame = save_frame(tmp_path / "f.png", paint_cells(sheet(), [(3, 3)]))
    out = tmp_path / "detections.csv"
    assert (
        main(["--pipeline", str(pipeline), str(frame), "--output", str(out), "--no-progress"]) == 0
    )
    record = _record(out)
    roles = {m["role"]: m["sha256"] for m in record["models"]}
    assert roles == {
        "detector": _sha256(detector),
        "filter": _sha256(moth_filter),
        "classifier": _sha256(classifier),
    }
    assert record["settings"]["filter"] == {"positive": "moth", "threshold": 0.5}
    assert [(i["path"], i["sha256"]) for i in record["inputs"]] == [
        (str(pipeline), _sha256(pipeline))
    ]
