"""moths-calibrate → moths-export → moths-infer on a model that never saw one species."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.fit_args import tiny_fit_args
from helpers.paths import TEST_DATA

from moths_framework.calibrate.calibration import Calibration
from moths_framework.calibrate.run import write_calibrated_checkpoint
from moths_framework.cli.calibrate import main as calibrate
from moths_framework.cli.evaluate import main as evaluate
from moths_framework.cli.export import main as export
from moths_framework.cli.fit import main as fit
from moths_framework.cli.infer import main as infer
from moths_framework.cli.predict import main as predict
from moths_framework.data.transforms import FileTransform, eval_transform
from moths_framework.images import open_rgb
from moths_framework.model.checkpoint import read_checkpoint
from moths_framework.model.rebuild import load_classifier

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


def independent_temperatures(run: Path, calibrated: Path) -> dict[str, float]:
    """Per rank, the T in [0.05, 20] minimising the NLL of softmax(logits / T) on the run's
    validation images: the calibrated model's logits (tau baked in, temperature not),
    computed here image by image and fitted with scipy."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    model = load_classifier(calibrated)
    with open(run / "split.csv", newline="", encoding="utf-8") as file:
        val = [row for row in csv.DictReader(file) if row["phase"] == "val"]
    # the data module's decode (a JPEG at reduced scale when that covers the resize)
    decode = FileTransform(eval_transform(model.preprocessing))
    x = torch.stack([decode(r["path"]) for r in val])
    with torch.no_grad():
        logits = [out.double().numpy() for out in model(x)]
    targets = np.array([model.hierarchy.targets(r["species"]) for r in val])
    fitted = {}
    for i, rank in enumerate(model.hierarchy.ranks):
        z, y = logits[i], targets[:, i]

        def nll(log_t: float, z=z, y=y) -> float:
            scaled = z / np.exp(log_t)
            return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(y)), y]))

        best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                               options={"xatol": 1e-6})  # fmt: skip
        fitted[rank] = float(np.exp(best.x))
    assert any(abs(t - 1.0) > 0.05 for t in fitted.values())  # a fit, not the identity
    return fitted


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
    assert temperature == pytest.approx(independent_temperatures(run, calibrated), abs=1e-2)
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


def test_tau_is_baked_into_the_export_with_parity(run_without_one_species, calibrated_export):
    run, _ = run_without_one_species
    calibrated, model = calibrated_export
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


@pytest.fixture(scope="module")
def calibrated_export(run_without_one_species) -> tuple[Path, Path]:
    """(calibrated checkpoint, its ONNX export) of the run without HELD_OUT."""
    run, _ = run_without_one_species
    calibrated, model = run / "calibrated.ckpt", run / "model.onnx"
    if not calibrated.exists():
        assert calibrate(["--ckpt", str(run / "best.ckpt"), "--tau", "1.0"]) == 0
    if not model.exists():
        assert export(["--onnx", "--ckpt", str(calibrated), "--output", str(model)]) == 0
    return calibrated, model


def unseen_and_test_images(run: Path, held_out: list[Path], root: Path) -> Path:
    """An image folder of the run's test images and the held-out species' images."""
    with open(run / "split.csv", newline="", encoding="utf-8") as file:
        test = [(row["species"], Path(row["path"])) for row in csv.DictReader(file)
                if row["phase"] == "test"]  # fmt: skip
    for species, image in [*test, *((HELD_OUT, p) for p in held_out)]:
        (root / species).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, root / species / image.name)
    return root


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return {row["path"]: row for row in csv.DictReader(file)}


@pytest.mark.parametrize("method", ["calibrated", "heads", "species_sum", "fused"])
def test_predict_answers_as_infer_does_on_the_export(
    run_without_one_species, calibrated_export, tmp_path, method
):
    """calibrate -> predict and calibrate -> export -> infer give the same roll-up and novelty."""
    run, held_out = run_without_one_species
    calibrated, model = calibrated_export
    checkpoint = read_checkpoint(calibrated)
    chosen = checkpoint["moths"]["calibration"]["rollup"]["method"]
    if method != "calibrated":  # every roll-up method, whichever the calibration chose
        checkpoint["moths"]["calibration"]["rollup"]["method"] = method
        calibrated = tmp_path / f"{method}.ckpt"
        torch.save(checkpoint, calibrated)
    images = unseen_and_test_images(run, held_out, tmp_path / "images")
    folder = tmp_path / "pred"
    assert predict(["--config", str(run / "config.yaml"), "--ckpt_path", str(calibrated),
                    "--data.source.class_path", "ImageFolder", "--data.source.init_args.root",
                    str(images), "--output", str(folder),
                    "--trainer.enable_progress_bar", "false"]) == 0  # fmt: skip
    predicted = read_csv(folder / "predictions.csv")
    inferred_csv = tmp_path / "infer.csv"
    rollup = chosen if method == "calibrated" else method
    assert infer(["--model", str(model), "--output", str(inferred_csv), "--no-progress",
                  "--rollup", rollup, *predicted]) == 0  # fmt: skip
    inferred = read_csv(inferred_csv)
    assert set(inferred) == set(predicted) and len(predicted) > 10
    for path, mine in predicted.items():
        theirs = inferred[path]
        for column in ("prediction", "prediction_rank", "confident", "novel"):
            assert mine[column] == theirs[column], (path, column)
        assert float(mine["prediction_prob"]) == pytest.approx(
            float(theirs["prediction_prob"]), rel=0, abs=1e-5
        )
        # A squared whitened distance (~20 here): torch and ONNX Runtime features differ
        # by ~2e-6, which moves it by ~1e-5 of itself (measured); the roll-up is exact.
        assert float(mine["novelty_score"]) == pytest.approx(
            float(theirs["novelty_score"]), rel=1e-4
        )
    outputs = np.load(folder / "outputs.npz", allow_pickle=False)
    assert str(outputs["rollup"]) == rollup
    scores = [float(predicted[p]["novelty_score"]) for p in outputs["paths"]]
    np.testing.assert_allclose(outputs["novelty_score"], scores, atol=1e-6)

    if method == "calibrated":  # moths-evaluate measures the novelty flag on HELD_OUT
        assert evaluate([str(folder)]) == 0
        novelty = json.loads((folder / "metrics.json").read_text())["novelty"]
        assert novelty["unseen_species"] == [HELD_OUT] and novelty["unseen"] == len(held_out)
        assert novelty["auroc"] >= 0.9
        assert "never saw" in (folder / "report.html").read_text()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("moths-calibrate: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_source_without_the_model_s_species_is_one_line(tiny_run, tmp_path, capsys):
    root = tmp_path / "unknown" / "Vanessa atalanta"
    root.mkdir(parents=True)
    for i, image in enumerate(sorted((TEST_DATA / "source_a" / "Aglais io").iterdir())[:3]):
        shutil.copy(image, root / f"{i}{image.suffix}")
    args = ["--ckpt", str(tiny_run / "best.ckpt"), "--output", str(tmp_path / "c.ckpt"),
            "--data.source.class_path", "ImageFolder", "--data.source.init_args.root",
            str(root.parent), "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert calibrate(args) == 2
    line = one_line_error(capsys)
    assert "none of the 3 readable calibration images" in line and "Vanessa atalanta" in line
    assert not (tmp_path / "c.ckpt").exists()


@pytest.mark.parametrize("damage", ["missing", "trained on val"])
def test_a_run_without_its_split_or_with_another_split_is_one_line(
    tiny_run, tmp_path, capsys, damage
):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    split = run / "split.csv"
    if damage == "missing":
        split.unlink()
    else:  # the data changed since training: a val image was a training image then
        text = split.read_text(encoding="utf-8")
        split.write_text(text.replace(",val\n", ",train\n", 1), encoding="utf-8")
    assert (
        calibrate(["--ckpt", str(run / "best.ckpt"), "--trainer.enable_progress_bar", "false"]) == 2
    )
    line = one_line_error(capsys)
    expected = "split.csv not found" if damage == "missing" else "1 validation/test images were"
    assert expected in line and "--data.source" in line
    assert not (run / "calibrated.ckpt").exists()


def test_force_overwrites_only_a_checkpoint_moths_calibrate_wrote(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "calibrated.ckpt").write_bytes(b"my own checkpoint")
    args = ["--ckpt", str(run / "best.ckpt"), "--force", "--trainer.enable_progress_bar", "false"]
    assert calibrate(args) == 2
    line = one_line_error(capsys)
    assert str(run / "calibrated.ckpt") in line and "moths-calibrate did not write it" in line
    assert (run / "calibrated.ckpt").read_bytes() == b"my own checkpoint"
