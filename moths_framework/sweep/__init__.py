"""``moths-sweep``: hyper-parameter search with Optuna around ``moths-fit``.

Each trial is a normal ``moths-fit`` run with the trial's values as overrides
(:mod:`.objective`); the study lives in a storage that any number of workers
join (:mod:`.study`); the optim config is parsed in :mod:`.settings`; the
report in :mod:`.report`.

May import ``train`` and everything below it, and Optuna; never ``cli``.
"""

from __future__ import annotations

from moths_framework.sweep.report import write_report
from moths_framework.sweep.run import Sweep, load_study, prepare_sweep
from moths_framework.sweep.settings import SweepConfigError, SweepSettings, load_sweep_config

__all__ = [
    "Sweep",
    "SweepConfigError",
    "SweepSettings",
    "load_study",
    "load_sweep_config",
    "prepare_sweep",
    "write_report",
]
