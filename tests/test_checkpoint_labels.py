"""A checkpoint owns its labels: evaluation and resume use the checkpoint's hierarchy.

The data changes between training and evaluation (new photos, a species
crossing ``min_samples``, a species renamed): the model still answers in its
own class order, and data species it has no class for count as ``Other``.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter

import pytest
import torch
import yaml
from helpers.paths import TEST_DATA

from moths_framework.cli.fit import main as fit
from moths_framework.cli.test import main as run_test
from moths_framework.data.datamodule import MothsDataModule
from moths_framework.data.sources import Manifest
from moths_framework.hierarchy import CsvHierarchy, LabelHierarchy
from moths_framework.model.checkpoint import checkpoint_hierarchy


def evaluate_args(run, ckpt=None, *extra: str) -> list[str]:
    ckpt = ckpt or run / "best.ckpt"
    return ["--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt), *extra]


def printed_metric(out: str, name: str) -> float:
    return float(re.search(rf"{re.escape(name)}\W+([0-9.]+)", out).group(1))


def _species_bundled_at_training(prepared, run) -> set[str]:
    """From the CSV files alone: the species the run had too few images of (its
    ``min_samples``) or that hierarchy.csv does not list."""
    min_samples = yaml.safe_load((run / "config.yaml").read_text())["data"]["min_samples"]
    with open(prepared / "manifest.csv", newline="") as file:
        images = Counter(row["species"] for row in csv.DictReader(file))
    with open(TEST_DATA / "hierarchy.csv", newline="") as file:
        listed = {row["speciesName"] for row in csv.DictReader(file, delimiter=";")}
    return {s for s, n in images.items() if n < min_samples or s not in listed}


def test_a_species_crossing_min_samples_since_training_is_other(
    tiny_run, prepared, tmp_path, capsys
):
    """At --data.min_samples 1 today's data would make Biston betularia a class; evaluated
    with the checkpoint, its test images (and Zygaena exulans's) are still Other."""
    bundled = _species_bundled_at_training(prepared, tiny_run)
    assert bundled == {"Biston betularia", "Zygaena exulans"}  # 4 images; not in hierarchy.csv
    trained = checkpoint_hierarchy(torch.load(tiny_run / "best.ckpt", weights_only=False))
    assert set(trained.bundled) == bundled and not bundled & set(trained.classes("species"))
    always_other = _always_predicting(tiny_run, tmp_path, trained.classes("species").index("Other"))
    args = evaluate_args(tiny_run, always_other, "--data.min_samples", "1")
    assert run_test([*args, "--trainer.default_root_dir", str(tmp_path)]) == 0
    with open(tiny_run / "split.csv", newline="") as file:
        test_species = [r["species"] for r in csv.DictReader(file) if r["phase"] == "test"]
    counted_as_other = sum(s in bundled for s in test_species)
    assert counted_as_other > 0
    accuracy = printed_metric(capsys.readouterr().out, "test/species/accuracy")
    assert accuracy == pytest.approx(counted_as_other / len(test_species), abs=1e-6)


def _relabelled_manifest(prepared, tmp_path, old: str, new: str):
    """The prepared manifest with species ``old`` renamed ``new`` (absolute paths)."""
    with open(prepared / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        row["path"] = str(prepared / row["path"])
        row["species"] = new if row["species"] == old else row["species"]
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _always_predicting(run, tmp_path, species_index: int):
    """A copy of the run's checkpoint whose species head always answers ``species_index``."""
    checkpoint = torch.load(run / "best.ckpt", weights_only=False)
    state = checkpoint["state_dict"]
    state["net.heads.species.weight"].zero_()
    state["net.heads.species.bias"].fill_(-10.0)
    state["net.heads.species.bias"][species_index] = 10.0
    path = tmp_path / "fixed.ckpt"
    torch.save(checkpoint, path)
    return path


def test_metrics_use_the_checkpoints_class_order(tiny_run, prepared, tmp_path, capsys):
    """Aglais io left the data and Vanessa atalanta joined: same class count, shifted order."""
    trained = checkpoint_hierarchy(torch.load(tiny_run / "best.ckpt", weights_only=False))
    manifest = _relabelled_manifest(prepared, tmp_path, "Aglais io", "Vanessa atalanta")
    data = MothsDataModule(Manifest(manifest), CsvHierarchy(TEST_DATA / "hierarchy.csv"), 5)
    assert data.hierarchy.num_classes() == trained.num_classes()  # today's order differs
    answer = trained.index("species", "Cydia pomonella")
    data.setup("test")
    test_species = [data.samples[i].species for i in data.split.test]
    expected = sum(trained.targets(s)[0] == answer for s in test_species) / len(test_species)
    shifted = sum(data.hierarchy.targets(s)[0] == answer for s in test_species) / len(test_species)
    assert expected != shifted  # the test can tell the two class orders apart

    ckpt = _always_predicting(tiny_run, tmp_path, answer)
    args = evaluate_args(tiny_run, ckpt, "--data.source.init_args.path", str(manifest))
    assert run_test([*args, "--trainer.default_root_dir", str(tmp_path)]) == 0
    assert printed_metric(capsys.readouterr().out, "test/species/accuracy") == pytest.approx(
        expected, abs=1e-6
    )


def test_a_pretrained_backbone_downloads_nothing_when_a_checkpoint_has_the_weights(
    tiny_run, tmp_path, monkeypatch
):
    import tiny_backbone

    built_with = []
    original = tiny_backbone.TinyCNN.__init__

    def recording_init(self, width=8, pretrained=False):
        built_with.append(pretrained)
        original(self, width, pretrained)

    monkeypatch.setattr(tiny_backbone.TinyCNN, "__init__", recording_init)
    args = evaluate_args(tiny_run, None, "--model.backbone.init_args.pretrained", "true")
    assert run_test([*args, "--trainer.default_root_dir", str(tmp_path)]) == 0
    assert built_with == [False]


def test_another_backbone_than_the_checkpoints_is_one_line(tiny_run, tmp_path, capsys):
    args = evaluate_args(tiny_run, None, "--model.backbone.init_args.width", "16")
    assert run_test([*args, "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(tiny_run / "best.ckpt") in err
    assert "TinyCNN(width=8)" in err and "TinyCNN(width=16)" in err


def test_resume_keeps_the_checkpoints_classes(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = evaluate_args(run, run / "last.ckpt", "--data.min_samples", "1")
    args += ["--trainer.default_root_dir", str(run), "--trainer.max_epochs", "2"]
    assert fit(args) == 0
    resumed = torch.load(run / "last.ckpt", weights_only=False)
    assert resumed["epoch"] == 1
    hierarchy = LabelHierarchy.from_json(resumed["moths"]["hierarchy"])
    assert hierarchy.num_classes()["species"] == 8 and "Biston betularia" in hierarchy.bundled
