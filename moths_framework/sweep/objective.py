"""A trial *is* a ``moths-fit`` run: the sweep's fit config plus the trial's values as
command-line overrides, in its own run directory ``SWEEP_DIR/trial-<n>/`` (made new:
``trial-<n>-2`` when an earlier study in the same directory left a ``trial-<n>``).

The run saves its ``config.yaml`` like any other, so ``moths-fit --config
SWEEP_DIR/trial-<n>/config.yaml`` repeats the trial alone. The only addition
is Optuna's pruning callback (``optuna_integration.PyTorchLightningPruningCallback``,
which supports ``lightning.pytorch`` 2.x), appended to the trainer's callbacks
after the config is parsed, so it never appears in ``config.yaml``.
"""

from __future__ import annotations

import gc
import math
import signal
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna_integration import PyTorchLightningPruningCallback

from moths_framework import plugins
from moths_framework.messages import one_line
from moths_framework.model.checkpoint import read_weights
from moths_framework.model.detector_checkpoint import checkpoint_task, read_detector_checkpoint
from moths_framework.output_folders import create_run_folder
from moths_framework.sweep.settings import SweepSettings
from moths_framework.train.cli import MothsCLI, run_fit
from moths_framework.train.cli_for_task import build_cli
from moths_framework.train.task import DETECTION

__all__ = ["TrialRun", "override_args", "release_memory"]


def _yaml_scalar(value: Any) -> str:
    """A value as YAML that reads back as the same value (``1.0e-05``, not ``1e-05``)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def override_args(params: dict[str, Any]) -> list[str]:
    """The trial's values as ``moths-fit`` options: ``--model.loss_weights.0=1.5``."""
    return [f"--{key}={_yaml_scalar(value)}" for key, value in params.items()]


@contextmanager
def _keeps_ctrl_c() -> Iterator[None]:
    """Lightning ignores Ctrl-C once it caught one; the sweep puts the handler back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


def _finish_wandb_run() -> None:
    """The next trial must not log into this trial's wandb run (wandb reuses an open one)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def release_memory(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna callback after each trial: free what it held (GPU memory above all, also
    after an out-of-memory error). It runs once the trial's exception, whose traceback
    holds the model, is gone; Lightning's objects reference each other, hence ``gc``."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class TrialRun:
    """The objective: runs one trial as a ``moths-fit`` run and returns its metric.

    The value is the metric stored in the trial's ``best.ckpt`` (a classifier's
    epoch with the lowest ``val/loss``, a detector's with the highest ``val/map``),
    so the table's number is the one of the model the trial keeps; for a metric the
    checkpoint does not carry, the last epoch's.

    A trial that raises is recorded failed with its error (user attribute
    ``error``); the full config of every trial that started training is kept
    in the study (user attribute ``config``), so ``best.yaml`` can be written
    from the storage alone, whichever machine ran the trial.

    Args:
        settings: the sweep section.
        sweep_dir: where ``trial-<n>/`` directories go.
        fit_args: ``moths-fit`` arguments common to every trial (``--config ...``).
    """

    def __init__(self, settings: SweepSettings, sweep_dir: Path, fit_args: list[str]) -> None:
        self.settings = settings
        self.sweep_dir = sweep_dir
        self.fit_args = fit_args

    def __call__(self, trial: optuna.Trial) -> float:
        params = {key: spec.suggest(trial) for key, spec in self.settings.space.items()}
        run_dir = create_run_folder(self.sweep_dir / f"trial-{trial.number}", "moths-fit")
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        args = [*self.fit_args, *override_args(params), "--trainer.default_root_dir", str(run_dir)]
        try:
            return self._fit(trial, args)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted (Ctrl-C)")
            raise
        except Exception as err:
            trial.set_user_attr("error", one_line(err, limit=1000))
            raise
        finally:
            config = run_dir / "config.yaml"
            if config.is_file():
                trial.set_user_attr("config", config.read_text())
            _finish_wandb_run()

    def _fit(self, trial: optuna.Trial, args: list[str]) -> float:
        plugins.load_all()
        cli = build_cli("fit", args)  # a classifier or a detector, as moths-fit
        if cli.trainer.world_size > 1:
            raise ValueError(
                "a trial runs on one device; for several GPUs start one worker per GPU "
                "(CUDA_VISIBLE_DEVICES=<i> moths-sweep ...)"
            )
        cli.trainer.callbacks.append(PyTorchLightningPruningCallback(trial, self.settings.metric))
        with _keeps_ctrl_c(), warnings.catch_warnings():
            # as moths-fit: the run directory holds config.yaml before the first checkpoint
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            try:
                run_fit(cli)
            except SystemExit as exit_:  # Lightning turns Ctrl-C into sys.exit(1)
                if cli.trainer.interrupted:
                    raise KeyboardInterrupt from exit_
                raise
        return self._value(cli)

    def _value(self, cli: MothsCLI) -> float:
        metric = self.settings.metric
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        best = getattr(cli.trainer.checkpoint_callback, "best_model_path", "")
        if best and Path(best).is_file():
            metrics.update(_checkpoint_metrics(best))
        if metric not in metrics:
            logged = ", ".join(sorted(k for k in metrics if k.startswith("val/")))
            raise ValueError(f"metric {metric} was not logged; logged: {logged}")
        if math.isnan(metrics[metric]):
            raise FloatingPointError(f"{metric} is NaN (the loss diverged?)")
        return metrics[metric]


def _checkpoint_metrics(path: str) -> dict[str, float]:
    """The validation metrics a trial's best checkpoint (classifier or detector) stored."""
    if checkpoint_task(path) == DETECTION:
        return dict(read_detector_checkpoint(path)[1].metrics)
    return dict(read_weights(path)[1].metrics)
