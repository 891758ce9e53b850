"""The moth / non-moth filter of docs/commands/filter.md (slow): configs/filter-dev.yaml
trains one on test_data/filter, and its exported ONNX model sorts the held-out crops.

The accuracy is computed here from the ONNX file alone (ONNX Runtime, this file's own
preprocessing from the file's metadata) against the labels of the run's split.csv.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers.paths import REPO, TEST_DATA
from PIL import Image

from moths_framework.cli.export import main as export
from moths_framework.cli.fit import main as fit
from moths_framework.cli.infer import main as infer

pytestmark = pytest.mark.slow

# Held-out accuracy the exported filter must reach on the test split (52 crops; measured
# 0.94, docs/commands/filter.md); one that guesses, or always says one class, gets ~0.5.
BAR = 0.85


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("filter") / "run"
    args = [
        "--config",
        str(REPO / "configs" / "filter-dev.yaml"),
        "--data.source.init_args.root",
        str(TEST_DATA / "filter"),
        "--data.hierarchy.init_args.path",
        str(TEST_DATA / "filter" / "hierarchy.csv"),
        "--trainer.default_root_dir",
        str(run),
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert fit(args) == 0
    return run


def _held_out(run) -> list[tuple[str, str]]:
    """(path, true class) of every crop of the run's test split."""
    with (run / "split.csv").open(newline="", encoding="utf-8") as file:
        return [(r["path"], r["species"]) for r in csv.DictReader(file) if r["phase"] == "test"]


def _species_logits(model, paths: list[str]) -> tuple[list[str], np.ndarray]:
    """The species classes and logits of ``model`` for ``paths``, preprocessed as its
    metadata says: shorter side to input / crop_pct (bilinear), centre crop, normalise."""
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    classes = json.loads(meta["moths.hierarchy"])["classes"]["species"]
    pre = json.loads(meta["moths.preprocessing"])
    height, width = pre["input_size"]
    short = round(min(height, width) / pre["crop_pct"])
    batch = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
        scale = short / min(image.size)
        size = (max(short, round(image.width * scale)), max(short, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = (image.width - width) // 2, (image.height - height) // 2
        pixels = np.asarray(image.crop((left, top, left + width, top + height)), np.float32) / 255
        batch.append(((pixels - pre["mean"]) / pre["std"]).transpose(2, 0, 1))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["species"], {"image": np.stack(batch).astype(np.float32)})
    return classes, logits


def test_the_exported_filter_sorts_held_out_crops(run, tmp_path):
    model = tmp_path / "filter.onnx"
    assert export(["--onnx", "--ckpt", str(run / "best.ckpt"), "--output", str(model)]) == 0
    held_out = _held_out(run)
    truth = [label for _, label in held_out]
    assert {label: truth.count(label) for label in set(truth)}.keys() == {"moth", "nonmoth"}
    assert len(held_out) >= 40, len(held_out)
    paths = [str(REPO / path) for path, _ in held_out]
    classes, logits = _species_logits(model, paths)
    assert classes == ["Other", "moth", "nonmoth"]
    predicted = [classes[i] for i in logits.argmax(axis=1)]
    right = [p == t for p, t in zip(predicted, truth, strict=True)]
    accuracy = float(np.mean(right))
    per_class = {c: float(np.mean([r for r, t in zip(right, truth, strict=True) if t == c]))
                 for c in ("moth", "nonmoth")}  # fmt: skip
    print(f"held-out accuracy {accuracy:.3f} on {len(right)} crops; per class {per_class}")
    assert accuracy >= BAR, (accuracy, per_class)
    assert min(per_class.values()) >= 0.75, per_class
    # moths-infer, the way a site runs the file, gives the same answers
    table = tmp_path / "predictions.csv"
    assert infer(["--model", str(model), *paths, "--output", str(table)]) == 0
    with table.open(newline="", encoding="utf-8") as file:
        answers = {row["path"]: row["species"] for row in csv.DictReader(file)}
    agree = np.mean([answers[p] == q for p, q in zip(paths, predicted, strict=True)])
    assert agree >= 0.95, agree
    # as a pipeline's filter, behind the demo detector: the frames hold moths only, so
    # (nearly) every box the detector finds goes on to the species classifier
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "detector: zoo:nl-moths-demo-detector\n"
        f"filter: {{model: {model}, positive: moth, threshold: 0.5}}\n"
        "classifier: zoo:nl-moths-demo\n"
    )
    detections = tmp_path / "detections.csv"
    frames = str(TEST_DATA / "frames" / "images")
    assert infer(["--pipeline", str(pipeline), frames, "--output", str(detections)]) == 0
    with detections.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    said = [row["filter_class"] for row in rows if row["detection"]]  # not frames with none
    print(f"pipeline: {len(said)} boxes, {said.count('moth')} passed as moths")
    # measured 573 of 624: 40 of 598 usual boxes stopped, 11 of 26 on frame 26, whose
    # moths are smaller than any crop it learned from
    assert len(said) >= 400 and said.count("moth") >= 0.85 * len(said), said
