"""The heavy training checks (marked slow; CI runs them): learning, DDP, tuning."""

from __future__ import annotations

import pytest
import torch
import yaml
from helpers.fit_args import tiny_fit_args
from helpers.paths import REPO, TEST_DATA

from moths_framework.cli.fit import main as fit
from moths_framework.hierarchy import LabelHierarchy

pytestmark = pytest.mark.slow


def test_dev_config_learns_the_test_data(tmp_path, prepared):
    """The bar: validation species accuracy >= 0.8 with configs/dev.yaml, seeded."""
    run = tmp_path / "run"
    args = [
        "--config",
        str(REPO / "configs" / "dev.yaml"),
        "--data.source.init_args.path",
        str(prepared / "manifest.csv"),
        "--data.hierarchy.init_args.path",
        str(TEST_DATA / "hierarchy.csv"),
        "--trainer.default_root_dir",
        str(run),
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert fit(args) == 0
    metrics = torch.load(run / "best.ckpt", weights_only=False)["moths"]["metrics"]
    assert metrics["val/species/accuracy"] >= 0.8, metrics


def test_ddp_spawn_on_two_cpu_processes(tmp_path, prepared):
    run = tmp_path / "run"
    args = tiny_fit_args(
        run,
        prepared / "manifest.csv",
        "--trainer.strategy",
        "ddp_spawn",
        "--trainer.devices",
        "2",
        "--trainer.max_epochs",
        "1",
        "--unfreeze",
        "GradualUnfreeze",
        "--unfreeze.epoch_start",
        "0",
        "--unfreeze.epoch_duration",
        "0",
    )
    assert fit(args) == 0
    checkpoints = sorted(p.name for p in run.glob("*.ckpt"))
    assert checkpoints == ["best.ckpt", "last.ckpt"]
    meta = torch.load(run / "best.ckpt", weights_only=False)["moths"]
    assert LabelHierarchy.from_json(meta["hierarchy"]).num_classes()["species"] == 8
    loss, accuracy = meta["metrics"]["val/loss"], meta["metrics"]["val/species/accuracy"]
    assert 0 < loss < 10 and 0 <= accuracy <= 1


def test_tune_runs_the_lr_finder_and_batch_size_scaling(tmp_path, prepared, capsys):
    run = tmp_path / "run"
    args = tiny_fit_args(
        run,
        prepared / "manifest.csv",
        "--tune",
        "true",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "4",
    )
    assert fit(args) == 0
    out = capsys.readouterr().out
    assert "tune: batch size" in out and "learning rate" in out
    assert (run / "best.ckpt").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())  # reproduces without tuning
    assert saved["tune"] is False
    assert f"tune: batch size {saved['data']['batch_size']} " in out
    assert f"learning rate {saved['model']['lr']}" in out  # None when the finder gave none


def test_wandb_logs_offline_without_a_login(tmp_path, prepared, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = tmp_path / "run"
    args = tiny_fit_args(
        run,
        prepared / "manifest.csv",
        "--trainer.max_epochs",
        "1",
        "--trainer.logger+=lightning.pytorch.loggers.WandbLogger",
        "--trainer.logger.project",
        "moths-test",
    )
    assert fit(args) == 0
    assert list((run / "wandb").glob("offline-run-*"))


def test_ddp_trains_exactly_the_unfrozen_part(tmp_path, prepared):
    """Under DDP every parameter stays registered; frozen ones must still not move."""
    from moths_framework.model.rebuild import load_classifier
    from moths_framework.train.unfreeze import trainable_parameters

    run, initial = tmp_path / "run", tmp_path / "initial.pt"
    args = tiny_fit_args(
        run,
        prepared / "manifest.csv",
        "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
        "--unfreeze", "MilestoneUnfreeze",
        "--unfreeze.epochs", "[0]", "--unfreeze.fractions", "[0.5]",
        "--trainer.callbacks+=training_probes.SaveInitialState",
        "--trainer.callbacks.path", str(initial),
    )  # fmt: skip
    assert fit(args) == 0
    before = torch.load(initial)
    model = load_classifier(run / "last.ckpt")
    trainable = {id(p) for p in trainable_parameters(model.backbone, 0.5)}
    moved = {
        name: not torch.equal(before[f"net.backbone.{name}"], p.detach())
        for name, p in model.backbone.named_parameters()
    }
    expected = {name: id(p) in trainable for name, p in model.backbone.named_parameters()}
    assert moved == expected and any(expected.values()) and not all(expected.values())
