"""A one-rank hierarchy (a moth / non-moth filter's) through the whole classifier flow:
moths-fit, moths-test, moths-predict, moths-evaluate, moths-export --onnx, moths-infer,
with the tiny test backbone on configs/filter-dev.yaml and test_data/filter (fast)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers.fit_args import FAST_FIT
from helpers.paths import REPO, TEST_DATA

from moths_framework.cli.evaluate import main as evaluate
from moths_framework.cli.export import main as export
from moths_framework.cli.fit import main as fit
from moths_framework.cli.infer import main as infer
from moths_framework.cli.predict import main as predict
from moths_framework.cli.test import main as moths_test
from moths_framework.inference import OnnxClassifier


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("one_rank") / "run"
    args = [
        "--config", str(REPO / "configs" / "filter-dev.yaml"),
        "--model.backbone", "tiny_backbone.TinyCNN",
        "--data.source.init_args.root", str(TEST_DATA / "filter"),
        "--data.hierarchy.init_args.path", str(TEST_DATA / "filter" / "hierarchy.csv"),
        "--trainer.default_root_dir", str(run),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *FAST_FIT,
    ]  # fmt: skip
    assert fit(args) == 0
    return run


def _with_run(run, *more: str) -> list[str]:
    return ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt"), *more]


def test_a_one_rank_model_tests_predicts_and_evaluates(run, capsys):
    assert moths_test(_with_run(run, "--trainer.enable_progress_bar", "false")) == 0
    assert "test/species/accuracy" in capsys.readouterr().out
    assert predict(_with_run(run, "--trainer.enable_progress_bar", "false")) == 0
    folder = run / "predictions" / "test"
    with (folder / "predictions.csv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    with (run / "split.csv").open(newline="", encoding="utf-8") as file:
        held_out = [r for r in csv.DictReader(file) if r["phase"] == "test"]
    assert sorted(r["true_species"] for r in rows) == sorted(r["species"] for r in held_out)
    assert {r["pred_species"] for r in rows} <= {"Other", "moth", "nonmoth"}
    assert "genus" not in rows[0] and "prob_family" not in rows[0]
    assert evaluate([str(folder)]) == 0
    metrics = json.loads((folder / "metrics.json").read_text())
    assert list(metrics["ranks"]) == ["species"]
    expected = np.mean([r["true_species"] == r["pred_species"] for r in rows])
    assert metrics["ranks"]["species"]["accuracy"] == pytest.approx(expected)


def test_a_one_rank_model_exports_and_infers(run, tmp_path):
    model = tmp_path / "filter.onnx"
    assert export(["--onnx", "--ckpt", str(run / "best.ckpt"), "--output", str(model)]) == 0
    classifier = OnnxClassifier.from_file(model)
    assert classifier.metadata.hierarchy.ranks == ("species",)
    assert classifier.metadata.hierarchy.classes("species") == ["Other", "moth", "nonmoth"]
    crops = sorted((TEST_DATA / "filter" / "nonmoth").glob("*.jpg"))[:6]
    table = tmp_path / "predictions.csv"
    assert infer(["--model", str(model), *map(str, crops), "--output", str(table)]) == 0
    with table.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [r["path"] for r in rows] == [str(c) for c in crops]
    for row in rows:
        assert row["species"] in {"Other", "moth", "nonmoth"} and not row["error"]
        assert row["prediction_rank"] in {"species", ""}
