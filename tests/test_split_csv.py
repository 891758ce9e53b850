"""Every training run records its split in ``<run dir>/split.csv``."""

from __future__ import annotations

import csv

from helpers.fit_args import tiny_fit_args

from moths_framework.cli.fit import main as fit
from moths_framework.data.sources import Manifest
from moths_framework.data.split import stratified_split

FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]  # fmt: skip


def test_a_training_run_writes_its_split(tmp_path, prepared):
    run = tmp_path / "run"
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST)) == 0
    with open(run / "split.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    samples = Manifest(prepared / "manifest.csv").samples()
    split = stratified_split(samples, 0.15, 42)  # configs/dev.yaml's fraction and seed
    assert list(rows[0]) == ["path", "species", "phase"]
    assert [(r["path"], r["species"]) for r in rows] == [(str(s.path), s.species) for s in samples]
    phases = split.phases()
    assert [r["phase"] for r in rows] == [phases[i] for i in range(len(samples))]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
