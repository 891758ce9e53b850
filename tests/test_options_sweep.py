"""moths-sweep's --study and --timeout by their effect on the study, on test_data with
the tiny backbone (one or two short trials each)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from helpers.paths import REPO, TEST_DATA

from moths_framework.cli.sweep import main as sweep

LR = "model.optimizer.init_args.lr"


def trial_args(manifest: Path) -> list[str]:
    """moths-fit options for every trial: the tiny backbone at 32 px, a few batches."""
    return [
        "--model.backbone", "tiny_backbone.TinyCNN",
        "--model.preprocessing.input_size", "[32, 32]",
        "--data.train_transforms.0.init_args.size", "32",
        "--data.source.init_args.path", str(manifest),
        "--data.hierarchy.init_args.path", str(TEST_DATA / "hierarchy.csv"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1",
    ]  # fmt: skip


@pytest.fixture
def optim(tmp_path: Path) -> Path:
    """configs/optim-dev.yaml (3 trials) searching the learning rate only."""
    raw = yaml.safe_load((REPO / "configs" / "optim-dev.yaml").read_text())
    raw["base"] = str(REPO / "configs" / "dev.yaml")
    raw["sweep"]["space"] = {LR: {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}
    path = tmp_path / "optim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_study_names_the_study_in_the_storage_and_the_default_folder(
    optim: Path, prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default folder is runs/sweeps/<study> from here
    args = ["--config", str(optim), "--study", "moth-lr", "--n-trials", "1"]
    assert sweep([*args, *trial_args(prepared / "manifest.csv")]) == 0
    folder = tmp_path / "runs" / "sweeps" / "moth-lr"
    storage = f"sqlite:///{folder / 'study.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    assert names == ["moth-lr"]  # not "optim", the config's name
    assert len(optuna.load_study(study_name="moth-lr", storage=storage).trials) == 1
    assert json.loads((folder / "sweep.json").read_text())["study"] == "moth-lr"
    assert (folder / "trial-0" / "best.ckpt").is_file()
    assert not (tmp_path / "runs" / "sweeps" / "optim").exists()


def test_timeout_stops_starting_trials_once_it_has_passed(
    optim: Path, prepared: Path, tmp_path: Path
) -> None:
    """Optuna checks the time after each trial: with 0.1 s, one trial of the three."""
    sweep_dir = tmp_path / "sweep"
    args = ["--config", str(optim), "--dir", str(sweep_dir), "--n-trials", "3", "--timeout", "0.1"]
    assert sweep([*args, *trial_args(prepared / "manifest.csv")]) == 0
    study = optuna.load_study(study_name="optim", storage=f"sqlite:///{sweep_dir / 'study.db'}")
    assert len(study.trials) == 1
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
