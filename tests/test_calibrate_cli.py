"""moths-calibrate → moths-export → moths-infer on a model that never saw one species."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_fit_args

from moths_framework.calibrate.calibration import Calibration
from moths_framework.calibrate.run import write_calibrated_checkpoint
from moths_framework.cli.calibrate import main as calibrate
from moths_framework.cli.export import main as export
from moths_framework.cli.fit import main as fit
from moths_framework.cli.infer import main as infer
from moths_framework.data.transforms import eval_transform
from moths_framework.images import open_rgb
from moths_framework.model.checkpoint import load_classifier, read_checkpoint

HELD_OUT = "Pieris rapae"  # a synthetic species the model never trains on


@pytest.fixture(scope="module")
def run_without_one_species(prepared, tmp_path_factory) -> tuple[Path, list[Path]]:
    """A tiny run trained without HELD_OUT, and the images of HELD_OUT."""
    with open(prepared / "manifest.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    manifest = prepared / "manifest_without_pieris.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["species"] != HELD_OUT)
    held_out = [prepared / r["path"] for r in rows if r["species"] == HELD_OUT]
    run = tmp_path_factory.mktemp("calibrate") / "run"
    assert fit(tiny_fit_args(run, manifest, "--trainer.max_epochs", "4")) == 0
    return run, held_out


def split_paths(run: Path, phase: str) -> list[str]:
    with open(run / "split.csv", newline="", encoding="utf-8") as file:
        return [row["path"] for row in csv.DictReader(file) if row["phase"] == phase]


def test_calibrate_export_infer_flags_the_unseen_species(run_without_one_species, capsys):
    run, held_out = run_without_one_species
    calibrated = run / "calibrated.ckpt"
    args = [
        "--ckpt",
        str(run / "best.ckpt"),
        "--tau",
        "1.0",
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert calibrate(args) == 0
    out = capsys.readouterr().out
    assert f"wrote {calibrated}" in out and "ECE before" in out and "novelty:" in out
    assert calibrate(args) == 2  # never overwrites without --force
    assert "exists; pass --force" in capsys.readouterr().err

    model = run / "model.onnx"
    assert export(["--onnx", "--ckpt", str(calibrated), "--output", str(model)]) == 0
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    temperature = json.loads(props["moths.temperature"])
    calibration = json.loads(props["moths.calibration"])
    assert any(t != 1.0 for t in temperature.values())
    assert set(calibration["thresholds"]) == set(temperature)
    assert calibration["tau"]["power"] == 1.0 and "moths.novelty" in props

    known = split_paths(run, "test")
    output = run / "infer.csv"
    assert infer(["--model", str(model), "--output", str(output), "--no-progress",
                  *known, *map(str, held_out)]) == 0  # fmt: skip
    with open(output, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {"novelty_score", "novel"} <= set(rows[0])
    unseen = np.array([HELD_OUT in row["path"] for row in rows])
    scores = np.array([float(row["novelty_score"]) for row in rows])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(unseen, scores) >= 0.9
    novel = np.array([row["novel"] == "true" for row in rows])
    assert np.mean(~novel[~unseen]) >= 0.9


def test_tau_is_baked_into_the_export_with_parity(run_without_one_species):
    run, _ = run_without_one_species
    calibrated = run / "calibrated.ckpt"
    if not calibrated.exists():
        assert calibrate(["--ckpt", str(run / "best.ckpt"), "--tau", "1.0"]) == 0
    original = load_classifier(run / "best.ckpt")
    baked = load_classifier(calibrated)
    images = [eval_transform(original.preprocessing)(open_rgb(p)) for p in split_paths(run, "val")]
    x = torch.stack(images[:8])
    with torch.no_grad():
        _, features = original.net.forward_with_features(x)
        head = original.net.heads["species"]
        weight = head.weight / head.weight.norm(dim=1, keepdim=True)  # P = 1
        expected = features @ weight.T + head.bias
        torch.testing.assert_close(baked(x)[0], expected, atol=1e-4, rtol=0)
    model = run / "model.onnx"
    if model.exists():
        import onnxruntime as ort

        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        (species,) = session.run(["species"], {"image": x.numpy()})
        assert np.abs(species - expected.numpy()).max() <= 1e-3


def test_tau_power_zero_leaves_the_checkpoint_bit_identical(tiny_run, tmp_path):
    checkpoint = read_checkpoint(tiny_run / "best.ckpt")
    calibration = Calibration({}, {}, 0.0, None, {"tau": {"power": 0.0}})
    write_calibrated_checkpoint(checkpoint, calibration, "species", tmp_path / "c.ckpt")
    written = read_checkpoint(tmp_path / "c.ckpt")["state_dict"]
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(written[key], value), key
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        before = load_classifier(tiny_run / "best.ckpt")(x)
        after = load_classifier(tmp_path / "c.ckpt")(x)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert calibrate(["--ckpt", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt not found" in capsys.readouterr().err
