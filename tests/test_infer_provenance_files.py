"""moths-infer's run.json beside each file it writes: the features file too, and with
--pipeline the pipeline file itself (path, sha256 and content).

The oracles: the sha256 of each file computed here with hashlib, and the pipeline's
content as this test wrote it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers.onnx_detectors import grid_detector, paint_cells, save_frame, sheet
from helpers.onnx_models import export_model, tiny_net
from helpers.onnx_models import metadata as classifier_metadata

from moths_framework.cli.infer import main as infer


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    frames = folder / "night"
    frames.mkdir()
    save_frame(frames / "a.png", paint_cells(sheet(), {(3, 3): 240}))
    save_frame(frames / "b.png", sheet())
    return {
        "detector": grid_detector(folder / "grid.onnx"),
        "classifier": export_model(tiny_net(), folder / "tiny.onnx", classifier_metadata()),
        "frames": frames,
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record(path: Path) -> dict:
    return json.loads(Path(f"{path}.run.json").read_text(encoding="utf-8"))


def test_the_features_file_has_its_own_run_json(models, tmp_path) -> None:
    out, features = tmp_path / "detections.csv", tmp_path / "features.npy"
    args = ["--detector", models["detector"], "--model", models["classifier"]]
    args += ["--features", features, "--output", out, models["frames"], "--no-progress"]
    assert infer([str(a) for a in args]) == 0
    beside_features, beside_output = record(features), record(out)
    assert beside_features["output"]["path"] == str(features)
    assert beside_features["output"]["sha256"] == sha256(features)
    assert beside_features["run_id"] == beside_output["run_id"]
    assert {m["role"]: m["sha256"] for m in beside_features["models"]} == {
        "detector": sha256(models["detector"]),
        "classifier": sha256(models["classifier"]),
    }


def test_a_run_json_of_yours_beside_the_features_stops_the_run(models, tmp_path, capsys) -> None:
    out, features = tmp_path / "detections.csv", tmp_path / "features.npy"
    Path(f"{features}.run.json").write_text("mine\n", encoding="utf-8")
    args = ["--detector", models["detector"], "--model", models["classifier"]]
    args += ["--features", features, "--output", out, models["frames"], "--no-progress"]
    assert infer([str(a) for a in args]) == 2
    assert "features.npy.run.json" in capsys.readouterr().err
    assert not out.exists() and not features.exists()
    assert Path(f"{features}.run.json").read_text(encoding="utf-8") == "mine\n"


def test_the_pipeline_file_is_recorded_with_its_content(models, tmp_path) -> None:
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"name: test pipeline\nclassifier: {{model: '{models['classifier']}'}}\n"
        f"detector: {{model: '{models['detector']}', min_score: 0.4}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "detections.csv"
    args = ["--pipeline", pipeline, "--output", out, models["frames"], "--no-progress"]
    assert infer([str(a) for a in args]) == 0
    run = record(out)
    assert run["settings"]["pipeline"] == {
        "file": str(pipeline),
        "sha256": sha256(pipeline),
        "content": {
            "name": "test pipeline",
            "classifier": {"model": str(models["classifier"])},
            "detector": {"model": str(models["detector"]), "min_score": 0.4},
        },
    }
    assert {m["role"] for m in run["models"]} == {"detector", "classifier"}
    assert str(pipeline) in [i["path"] for i in run["inputs"]]
