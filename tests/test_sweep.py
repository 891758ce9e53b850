"""moths-sweep end to end on test_data with the tiny backbone: trials are moths-fit runs,
failures are recorded, pruning, concurrent workers, interrupt and continue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from helpers.paths import REPO, TEST_DATA
from optuna.trial import TrialState

from moths_framework.cli.fit import main as fit
from moths_framework.cli.sweep import main as sweep
from moths_framework.sweep import load_study, prepare_sweep
from moths_framework.sweep.objective import TrialRun
from moths_framework.sweep.settings import ParamSpec, SweepSettings

OPTIM_DEV = REPO / "configs" / "optim-dev.yaml"
LR = "model.optimizer.init_args.lr"


def tiny(manifest: Path, *extra: str) -> list[str]:
    """moths-fit options for every trial: the tiny backbone at 32 px, a few batches."""
    return [
        "--model.backbone", "tiny_backbone.TinyCNN",
        "--model.preprocessing.input_size", "[32, 32]",
        "--data.train_transforms.0.init_args.size", "32",
        "--data.source.init_args.path", str(manifest),
        "--data.hierarchy.init_args.path", str(TEST_DATA / "hierarchy.csv"),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2",
        *extra,
    ]  # fmt: skip


def optim_dev_with(tmp_path: Path, **sweep_section: Any) -> Path:
    """configs/optim-dev.yaml with some sweep keys replaced."""
    raw = yaml.safe_load(OPTIM_DEV.read_text())
    raw["base"] = str(REPO / "configs" / "dev.yaml")
    raw["sweep"].update(sweep_section)
    path = tmp_path / "optim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def config_value(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_a_sweep_runs_trials_as_fit_runs_and_reports(tmp_path, prepared, capsys):
    """Grid of 3: one lr breaks the optimizer; that trial fails with the error, the
    other two complete; every trial dir's config.yaml holds the trial's values."""
    space = {
        LR: {"type": "categorical", "choices": [0.003, -1.0, 0.01]},
        "model.loss_weights.0": {"type": "categorical", "choices": [2.0]},
        "data.train_transforms.0.init_args.scale.0": {"type": "categorical", "choices": [0.4]},
        "unfreeze.init_args.final_fraction": {"type": "categorical", "choices": [0.5]},
    }
    config = optim_dev_with(tmp_path, sampler="grid", space=space)
    sweep_dir = tmp_path / "sweep"
    assert sweep(["--config", str(config), "--dir", str(sweep_dir),
                  *tiny(prepared / "manifest.csv")]) == 0  # fmt: skip
    out = capsys.readouterr().out

    study = load_study(sweep_dir)
    assert len(study.trials) == 3
    states = {t.params[LR]: t.state for t in study.trials}
    assert states == {0.003: TrialState.COMPLETE, -1.0: TrialState.FAIL, 0.01: TrialState.COMPLETE}
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert "Invalid learning rate: -1.0" in failed.user_attrs["error"]
    assert "Invalid learning rate: -1.0" in out  # in the table's note column
    for trial in study.trials:
        saved = yaml.safe_load((sweep_dir / f"trial-{trial.number}" / "config.yaml").read_text())
        for key, value in trial.params.items():
            assert config_value(saved, key) == pytest.approx(value), (trial.number, key)
        assert saved["trainer"]["default_root_dir"] == str(sweep_dir / f"trial-{trial.number}")
        if trial.state == TrialState.COMPLETE:
            assert (sweep_dir / f"trial-{trial.number}" / "best.ckpt").is_file()

    assert {"best.yaml", "history.png", "importance.png", "trials.csv"} <= {
        p.name for p in sweep_dir.iterdir()
    }
    with pytest.raises(SystemExit) as exit_:
        fit(["--config", str(sweep_dir / "best.yaml"), "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert config_value(printed, LR) == study.best_trial.params[LR]
    # ... and reproduces the best trial's metric, run alone
    rerun = tmp_path / "rerun"
    assert fit(["--config", str(sweep_dir / "best.yaml"),
                "--trainer.default_root_dir", str(rerun)]) == 0  # fmt: skip
    metrics = torch.load(rerun / "best.ckpt", weights_only=False)["moths"]["metrics"]
    assert metrics["val/species/f1_macro"] == pytest.approx(study.best_value, abs=1e-6)

    capsys.readouterr()
    assert sweep(["--report", str(sweep_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["trial", "state", "val/species/f1_macro"]
    assert table[1].split()[:2] == [str(study.best_trial.number), "complete"]


def test_a_value_the_parser_rejects_fails_that_trial_with_the_config_error(tmp_path, prepared):
    settings = SweepSettings(
        space={"data.batch_size": ParamSpec("data.batch_size", "categorical", choices=("big",))}
    )
    args = ["--config", str(REPO / "configs" / "dev.yaml"), *tiny(prepared / "manifest.csv")]
    study = optuna.create_study(direction="maximize")
    study.optimize(TrialRun(settings, tmp_path, args), n_trials=1, catch=(Exception,))
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL
    assert "data.batch_size" in trial.user_attrs["error"]
    assert "config" not in trial.user_attrs  # it never started training


def test_a_trial_worse_after_its_first_epoch_is_pruned(tmp_path, prepared):
    config = optim_dev_with(
        tmp_path,
        metric="val/loss",
        direction="minimize",
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        space={LR: {"type": "float", "low": 1e-4, "high": 100.0, "log": True}},
    )
    run = prepare_sweep(
        config,
        sweep_dir=tmp_path / "sweep",
        n_trials=2,
        fit_overrides=tiny(prepared / "manifest.csv", "--trainer.max_epochs", "2"),
    )
    run.study.enqueue_trial({LR: 0.003})
    run.study.enqueue_trial({LR: 50.0})  # diverges at once
    run.run()
    good, bad = run.study.trials
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [0, 1]
    assert bad.state == TrialState.PRUNED and sorted(bad.intermediate_values) == [0]
    assert bad.intermediate_values[0] > good.intermediate_values[0]


def _worker(sweep_dir: Path, manifest: Path, n_trials: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "moths_framework.cli.sweep", "--config", str(OPTIM_DEV),
               "--dir", str(sweep_dir), "--n-trials", str(n_trials)]  # fmt: skip
    command += tiny(manifest, *extra)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    # As from a terminal: a test run started in the background (``make test &``, some CI
    # runners) ignores SIGINT, and a child inherits that, so Ctrl-C would never arrive.
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path, prepared):
    """Both start at once on a fresh database: no lock or schema-creation errors."""
    sweep_dir = tmp_path / "sweep"
    workers = [_worker(sweep_dir, prepared / "manifest.csv", 2) for _ in range(2)]
    results = [w.communicate(timeout=900) for w in workers]
    for worker, (_, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "locked" not in err and "IntegrityError" not in err and "Traceback" not in err
    study = load_study(sweep_dir)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(p.name for p in sweep_dir.glob("trial-*")) == [f"trial-{n}" for n in range(4)]


@pytest.mark.slow
@pytest.mark.needs_real_parts
def test_two_machines_share_one_postgresql_study(tmp_path, prepared, postgres_url):
    """docs/commands/sweep.md's recipe: the same command on two machines (two sweep
    directories), one postgresql:// storage; then a report from the storage alone."""
    name = f"two-machines-{uuid.uuid4().hex[:8]}"
    machines = [tmp_path / "a", tmp_path / "b"]
    shared = ("--storage", postgres_url, "--study", name)
    workers = [_worker(m / "sweep", prepared / "manifest.csv", 2, *shared) for m in machines]
    results = [w.communicate(timeout=900) for w in workers]
    try:
        for worker, (_, err) in zip(workers, results, strict=True):
            assert worker.returncode == 0, err[-3000:]
            assert "Traceback" not in err
        study = optuna.load_study(study_name=name, storage=postgres_url)
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]  # distinct, 2 + 2
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
        ran = [sorted(int(p.name[6:]) for p in (m / "sweep").glob("trial-*")) for m in machines]
        assert [len(r) for r in ran] == [2, 2] and sorted(ran[0] + ran[1]) == [0, 1, 2, 3]

        report = subprocess.run(
            [sys.executable, "-m", "moths_framework.cli.sweep", "--report",
             str(tmp_path / "elsewhere"), *shared],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr[-3000:]
        rows = report.stdout.splitlines()[1:5]
        assert sorted(int(row.split()[0]) for row in rows) == [0, 1, 2, 3]
        assert all(row.split()[1] == "complete" for row in rows)
        assert (tmp_path / "elsewhere" / "best.yaml").is_file()
    finally:
        optuna.delete_study(study_name=name, storage=postgres_url)


def _wait_for_a_running_fit(sweep_dir: Path, worker: subprocess.Popen) -> None:
    """Until one trial completed and the next one is training (its config.yaml exists)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.5)
        try:
            trials = load_study(sweep_dir).trials
        except Exception:  # the study is not there yet
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if any(t.state == TrialState.COMPLETE for t in trials) and running:
            if (sweep_dir / f"trial-{running[0].number}" / "config.yaml").is_file():
                time.sleep(1.0)
                return
    raise AssertionError("the sweep never reached a second trial's training")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_a_rerun_continues_the_study(tmp_path, prepared):
    sweep_dir = tmp_path / "sweep"
    worker = _worker(sweep_dir, prepared / "manifest.csv", 50, "--trainer.max_epochs", "3")
    _wait_for_a_running_fit(sweep_dir, worker)
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 130, err[-3000:]
    assert "interrupted" in err and "Run the same command again" in err
    assert "trial" in out.splitlines()[0] or "best trial" in out  # the report was written
    before = load_study(sweep_dir).trials
    assert not [t for t in before if t.state == TrialState.RUNNING]
    interrupted = before[-1]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["error"] == "interrupted (Ctrl-C)"
    complete = {t.number for t in before if t.state == TrialState.COMPLETE}
    assert complete

    again = [str(a) for a in ["--config", OPTIM_DEV, "--dir", sweep_dir, "--n-trials", 1]]
    assert sweep([*again, *tiny(prepared / "manifest.csv")]) == 0
    after = load_study(sweep_dir).trials
    assert len(after) == len(before) + 1
    assert complete < {t.number for t in after if t.state == TrialState.COMPLETE}


@pytest.mark.slow
def test_a_sweep_over_a_detector_config_maximises_its_map(tmp_path, capsys):
    """configs/optim-detector-dev.yaml's trials are detector fits (model.detector,
    data.instances): each trial's value is the val/map_50 its best.ckpt stored, and
    best.yaml trains a detector again."""
    raw = yaml.safe_load((REPO / "configs" / "optim-detector-dev.yaml").read_text())
    raw["base"] = str(REPO / "configs" / "detector-dev.yaml")
    raw["trainer"] = {"max_epochs": 1, "limit_train_batches": 4, "enable_progress_bar": False}
    raw["data"] = {"instances": str(TEST_DATA / "frames" / "instances.json")}
    raw["sweep"].update(n_trials=1, space={LR: {"type": "categorical", "choices": [0.003]}})
    config = tmp_path / "optim.yaml"
    config.write_text(yaml.safe_dump(raw))
    sweep_dir = tmp_path / "sweep"
    assert sweep(["--config", str(config), "--dir", str(sweep_dir)]) == 0

    (trial,) = load_study(sweep_dir).trials
    assert trial.state == TrialState.COMPLETE
    saved = yaml.safe_load((sweep_dir / "trial-0" / "config.yaml").read_text())
    assert saved["model"]["detector"]["init_args"]["name"] == "fasterrcnn_tiny"
    stored = torch.load(sweep_dir / "trial-0" / "best.ckpt", weights_only=False)["moths"]
    assert stored["task"] == "detection"
    assert trial.value == pytest.approx(stored["metrics"]["val/map_50"], abs=1e-9)
    assert 0.0 <= trial.value <= 1.0
    best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
    assert best["model"]["detector"]["init_args"]["name"] == "fasterrcnn_tiny"
    assert "backbone" not in best["model"]
