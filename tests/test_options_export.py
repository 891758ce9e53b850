"""moths-export --no-features by its effect: no ``features`` output, the same logits,
and a calibrated model that infers without novelty scores, saying why."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers.paths import TEST_DATA

from moths_framework.cli.calibrate import main as calibrate
from moths_framework.cli.export import main as export
from moths_framework.cli.infer import main as infer
from moths_framework.inference import OnnxClassifier

RANKS = ["species", "group", "family", "genus"]
IMAGES = [str(TEST_DATA / "source_b" / "Pieris rapae" / f"{n}.jpg") for n in (1, 2, 4, 5)]


def exported(checkpoint: Path, output: Path, *args: str) -> Path:
    assert export(["--onnx", "--ckpt", str(checkpoint), "--output", str(output), *args]) == 0
    return output


def output_names(model: Path) -> list[str]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return [o.name for o in session.get_outputs()]


@pytest.fixture(scope="module")
def calibrated(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_run's best.ckpt calibrated: it carries a novelty detector on the features."""
    output = tmp_path_factory.mktemp("calibrated") / "calibrated.ckpt"
    args = ["--ckpt", str(tiny_run / "best.ckpt"), "--output", str(output),
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert calibrate(args) == 0
    return output


def test_no_features_leaves_out_the_features_output_and_nothing_else(
    tiny_run: Path, tmp_path: Path
) -> None:
    full = exported(tiny_run / "best.ckpt", tmp_path / "full.onnx")
    bare = exported(tiny_run / "best.ckpt", tmp_path / "bare.onnx", "--no-features")
    assert output_names(full) == [*RANKS, "features"]
    assert output_names(bare) == RANKS
    with_features = OnnxClassifier.from_file(full, "cpu")
    without = OnnxClassifier.from_file(bare, "cpu")
    batch = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    for rank, logits in with_features.logits(batch).items():
        np.testing.assert_allclose(without.logits(batch)[rank], logits, atol=1e-6)
    predictions = without.predict(IMAGES)
    assert all(p.ok for p in predictions)
    assert [p.prediction for p in predictions] == [
        p.prediction for p in with_features.predict(IMAGES)
    ]


def test_a_calibrated_model_without_features_infers_without_novelty_and_says_so(
    calibrated: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = exported(calibrated, tmp_path / "full.onnx")
    bare = exported(calibrated, tmp_path / "bare.onnx", "--no-features")
    columns = {}
    for model in (full, bare):
        output = tmp_path / f"{model.stem}.csv"
        with caplog.at_level(logging.WARNING, logger="moths_framework"):
            assert infer(["--model", str(model), *IMAGES, "--output", str(output),
                          "--no-progress"]) == 0  # fmt: skip
        with output.open(newline="") as file:
            rows = list(csv.DictReader(file))
        assert len(rows) == len(IMAGES) and not any(row["error"] for row in rows)
        columns[model.stem] = set(rows[0])
    assert {"novelty_score", "novel"} <= columns["full"]
    assert not {"novelty_score", "novel"} & columns["bare"]
    (warning,) = [r.getMessage() for r in caplog.records if "novelty" in r.getMessage()]
    assert "bare.onnx has novelty statistics but no 'features' output" in warning
    assert "--no-features" in warning and "no novelty scores" in warning
