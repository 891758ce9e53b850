"""``moths-zoo`` commands, and ``zoo:`` names in moths-infer and OnnxClassifier (offline)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from moths_framework.cli import infer as infer_cli
from moths_framework.cli import zoo as zoo_cli
from moths_framework.inference import OnnxClassifier
from moths_framework.zoo.schema import index_schema

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"
DEMO_DIR = ZOO / "nl-moths-demo" / "1.0.0"
IMAGES = [
    REPO / "test_data" / "source_a" / "Aglais io" / "1.jpg",
    REPO / "test_data" / "source_b" / "Noctua comes" / "2.jpg",
]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOTHS_OFFLINE", "1")  # nothing here may touch the network
    monkeypatch.delenv("MOTHS_ZOO_INDEX", raising=False)
    return tmp_path / "cache"


def test_list_and_filter(capsys):
    assert zoo_cli.main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "version", "species", "size", "region"]
    assert out[1].split()[:3] == ["nl-moths-demo", "1.0.0", "8"]
    assert zoo_cli.main(["list", "britain"]) == 0
    assert "no model matches 'britain'" in capsys.readouterr().out


def test_show_pull_verify(capsys, cache):
    assert zoo_cli.main(["show", "nl-moths-demo"]) == 0
    out = capsys.readouterr().out
    assert '"species": 8' in out and "not cached" in out
    assert zoo_cli.main(["pull", "nl-moths-demo@1.0.0", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("(sha256 verified)") == 2
    assert zoo_cli.main(["verify", "nl-moths-demo"]) == 0
    assert "2 cached file(s)" in capsys.readouterr().out
    blob = next((cache / "zoo" / "blobs").glob("*.onnx"))
    blob.write_bytes(b"rot")
    assert zoo_cli.main(["verify", "--all"]) == 1
    assert "CORRUPT" in capsys.readouterr().out and not blob.exists()


def test_errors_are_one_line_exit_2(capsys):
    assert zoo_cli.main(["show", "nl-moth-demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean nl-moths-demo" in err
    assert zoo_cli.main(["--index", "/nowhere", "list"]) == 2
    assert "zoo index /nowhere not found" in capsys.readouterr().err
    assert zoo_cli.main(["list", "--index", "/nowhere/either"]) == 2
    assert "/nowhere/either" in capsys.readouterr().err


def test_add_writes_a_valid_entry_and_a_card(tmp_path, capsys):
    index = tmp_path / "team-zoo"
    args = [
        "add",
        str(DEMO_DIR / "model.onnx"),
        "--checkpoint",
        str(DEMO_DIR / "model.safetensors"),
    ]
    args += ["--id", "team-model", "--version", "2.1", "--index", str(index)]
    args += ["--license", "CC-BY-4.0", "--region", "Flanders", "--citation", "Us et al. 2026"]
    assert zoo_cli.main(args) == 0
    data = json.loads((index / "index.json").read_text())
    jsonschema.validate(data, index_schema())
    (entry,) = data["models"]
    assert (entry["id"], entry["version"], entry["region"]) == ("team-model", "2.1", "Flanders")
    assert entry["ranks"] == {"species": 8, "group": 4, "family": 5, "genus": 6}
    assert [f["url"] for f in entry["files"]] == [
        "team-model/2.1/model.onnx",
        "team-model/2.1/model.safetensors",
    ]
    card = (index / "team-model" / "README.md").read_text()
    for must in ("Flanders", "CC-BY-4.0", "Us et al. 2026", "Pammene rhediella", "## Limits"):
        assert must in card
    assert zoo_cli.main(args) == 2
    assert "already has team-model@2.1; pass --force" in capsys.readouterr().err
    assert zoo_cli.main([*args, "--force"]) == 0
    # The new index is usable at once, from another folder.
    moved = tmp_path / "moved"
    shutil.copytree(index, moved)
    assert zoo_cli.main(["--index", str(moved), "pull", "team-model", "--no-progress"]) == 0


def test_add_refuses_a_file_that_is_not_a_moths_model(tmp_path, capsys):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"nope")
    assert (
        zoo_cli.main(["add", str(bad), "--id", "x", "--version", "1", "--index", str(tmp_path)])
        == 2
    )
    assert "x.onnx" in capsys.readouterr().err


def test_moths_infer_runs_a_zoo_model_offline_from_the_repository_index(tmp_path):
    out = tmp_path / "predictions.csv"
    args = ["--model", "zoo:nl-moths-demo", *map(str, IMAGES), "--output", str(out)]
    assert infer_cli.main([*args, "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(p) for p in IMAGES]
    assert all(r["error"] == "" and r["species"] for r in rows)


def test_moths_infer_unknown_zoo_model_is_a_usage_error(capsys, tmp_path):
    args = ["--model", "zoo:nope", str(IMAGES[0]), "--output", str(tmp_path / "p.csv")]
    assert infer_cli.main([*args, "--no-progress"]) == 2
    assert "no model 'nope'" in capsys.readouterr().err


def test_onnx_classifier_from_a_zoo_name_equals_the_file():
    by_name = OnnxClassifier.from_file("zoo:nl-moths-demo@1.0.0", "cpu")
    by_path = OnnxClassifier.from_file(DEMO_DIR / "model.onnx", "cpu")
    a, b = by_name.predict(IMAGES), by_path.predict(IMAGES)
    assert [p.prediction for p in a] == [p.prediction for p in b]
    assert [p.prediction_prob for p in a] == [p.prediction_prob for p in b]
