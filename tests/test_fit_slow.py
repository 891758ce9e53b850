"""The heavy training checks (marked slow; CI runs them): learning, DDP, tuning."""

from __future__ import annotations

import csv
import math
import re

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
    # The recorded validation metrics cover both ranks' halves of the validation images:
    # recompute them in this one process from best.ckpt and the images, on the set each
    # rank drew from (DistributedSampler pads it to a multiple of 2 from its start).
    expected_loss, expected_accuracy = validation_loss_and_accuracy(run, world_size=2)
    assert meta["metrics"]["val/loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert meta["metrics"]["val/species/accuracy"] == pytest.approx(expected_accuracy, abs=1e-6)


def validation_loss_and_accuracy(run, world_size: int) -> tuple[float, float]:
    """The run's validation loss (mean over ranks of cross-entropy with the config's label
    smoothing) and species accuracy, computed with plain torch from best.ckpt."""
    from torch.nn import functional as F

    from moths_framework.data.transforms import FileTransform, eval_transform
    from moths_framework.model.rebuild import load_classifier

    model = load_classifier(run / "best.ckpt").eval()
    config = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert len(set(config["loss_weights"])) == 1  # equal weights: the plain mean of ranks
    smoothing = config["loss"]["init_args"]["label_smoothing"]
    with open(run / "split.csv", newline="", encoding="utf-8") as file:
        val = [(r["path"], r["species"]) for r in csv.DictReader(file) if r["phase"] == "val"]
    val += val[: -len(val) % world_size]
    # the data module's decode (a JPEG at reduced scale when that covers the resize)
    decode = FileTransform(eval_transform(model.preprocessing))
    x = torch.stack([decode(path) for path, _ in val])
    targets = torch.tensor([model.hierarchy.targets(species) for _, species in val])
    with torch.no_grad():
        logits = model(x)
    losses = [
        F.cross_entropy(out, targets[:, i], label_smoothing=smoothing)
        for i, out in enumerate(logits)
    ]
    accuracy = (logits[0].argmax(dim=1) == targets[:, 0]).double().mean()
    return float(torch.stack(losses).mean()), float(accuracy)


def test_tune_runs_the_lr_finder_and_batch_size_scaling(tmp_path, prepared, capsys, monkeypatch):
    """The real LR finder on the tiny model: a finite suggestion, one of the learning rates
    it tried within the range it searched, and config.yaml records exactly that value."""
    from lightning.pytorch.tuner import Tuner

    finders = []
    real_lr_find = Tuner.lr_find

    def recording_lr_find(tuner, *args, **kwargs):
        finders.append(real_lr_find(tuner, *args, **kwargs))
        return finders[-1]

    monkeypatch.setattr(Tuner, "lr_find", recording_lr_find)
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
    assert (run / "best.ckpt").is_file()
    (finder,) = finders
    tried = finder.results["lr"]
    assert len(tried) > 10  # enough points for a suggestion that skips the first ten
    printed = re.search(r"learning rate (\S+)", out)
    assert printed is not None, out
    lr = float(printed.group(1))  # "None" would raise here
    assert math.isfinite(lr) and finder.lr_min <= min(tried) <= lr <= max(tried) <= finder.lr_max
    assert lr in tried
    saved = yaml.safe_load((run / "config.yaml").read_text())  # reproduces without tuning
    assert saved["tune"] is False
    assert saved["model"]["lr"] == lr
    assert f"tune: batch size {saved['data']['batch_size']} " in out
    groups = torch.load(run / "last.ckpt", weights_only=False)["optimizer_states"][0]
    assert [g["initial_lr"] for g in groups["param_groups"]] == [lr, lr]  # the run used it


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
