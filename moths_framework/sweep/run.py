"""Run a sweep: join (or create) the study, run trials, and find it again for a report.

A sweep directory holds ``trial-<n>/`` run directories, ``fit.yaml`` (the fit
keys of the optim config), ``sweep.json`` (study name and storage, for
``--report``), ``study.db`` (the default storage) and the report's files. A
file there of one of those names that ``moths-sweep`` did not write stops the
sweep before it starts (see :mod:`moths_framework.output_folders`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from moths_framework.atomic_files import write_text_atomically
from moths_framework.output_folders import check_may_overwrite, record_written
from moths_framework.sweep.objective import TrialRun, release_memory
from moths_framework.sweep.report import REPORT_FILES, SWEEP_WRITER
from moths_framework.sweep.settings import SweepConfigError, load_sweep_config
from moths_framework.sweep.study import (
    default_storage,
    open_storage,
    open_study,
    printable_storage,
)

__all__ = ["Sweep", "load_study", "prepare_sweep"]

SWEEP_FILE = "sweep.json"
FIT_FILE = "fit.yaml"


@dataclass
class Sweep:
    """A study joined by this worker, ready to run trials."""

    study: optuna.Study
    sweep_dir: Path
    storage: str
    objective: TrialRun
    n_trials: int | None
    timeout: float | None

    def run(self) -> None:
        """Run trials until ``n_trials`` (this worker's), ``timeout`` or the grid is done.

        A trial that raises is recorded failed and the sweep goes on; Ctrl-C
        (``KeyboardInterrupt``) records the running trial failed and propagates.
        """
        self.study.optimize(
            self.objective,
            n_trials=self.n_trials,
            timeout=self.timeout,
            catch=(Exception,),
            callbacks=[release_memory],
        )


def prepare_sweep(
    config: str | Path,
    *,
    storage: str | None = None,
    study_name: str | None = None,
    sweep_dir: str | Path | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    fit_overrides: list[str] | None = None,
) -> Sweep:
    """Read the optim config and join its study (created on first use).

    Args:
        config: the optim config (fit config or ``base:``, plus ``sweep:``).
        storage: SQLAlchemy URL or journal file path; default ``sqlite:///SWEEP_DIR/study.db``.
        study_name: default: the config file's name without ``.yaml``.
        sweep_dir: default ``runs/sweeps/<study name>``.
        n_trials, timeout: override the config's (per worker: each runs its own).
        fit_overrides: ``moths-fit`` options added to every trial (before its values).

    Raises:
        SweepConfigError: a malformed optim config or an unreachable storage.
        OutputFolderError: the directory holds a file of the sweep's names that
            moths-sweep did not write.
    """
    settings, base, fit_keys = load_sweep_config(config)
    name = study_name or Path(config).stem
    directory = Path(sweep_dir or Path("runs") / "sweeps" / name)
    check_may_overwrite(directory, [FIT_FILE, SWEEP_FILE, *REPORT_FILES], SWEEP_WRITER, "--dir")
    if storage is None:
        directory.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(directory)
    study = open_study(open_storage(url), name, settings)  # a bad --storage leaves nothing
    directory.mkdir(parents=True, exist_ok=True)
    # Recorded before they are written: a worker starting at the same time finds them ours.
    record_written(directory, [FIT_FILE, SWEEP_FILE], SWEEP_WRITER)
    fit_args = ["--config", str(base)] if base else []
    if fit_keys:
        write_text_atomically(directory / FIT_FILE, yaml.safe_dump(fit_keys, sort_keys=False))
        fit_args += ["--config", str(directory / FIT_FILE)]
    record = {"study": name, "storage": printable_storage(url), "config": str(config)}
    write_text_atomically(directory / SWEEP_FILE, json.dumps(record, indent=2) + "\n")
    return Sweep(
        study=study,
        sweep_dir=directory,
        storage=url,
        objective=TrialRun(settings, directory, [*fit_args, *(fit_overrides or [])]),
        n_trials=n_trials if n_trials is not None else settings.n_trials,
        timeout=timeout if timeout is not None else settings.timeout,
    )


def load_study(
    sweep_dir: str | Path, *, storage: str | None = None, study_name: str | None = None
) -> optuna.Study:
    """The study of a sweep directory (from its ``sweep.json``; either argument overrides;
    without either, the study is named as the directory).

    Raises:
        SweepConfigError: no such sweep, a storage that needs its password again,
            or no such study in the storage.
    """
    directory = Path(sweep_dir)
    record_path = directory / SWEEP_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if not record and not storage:
        raise SweepConfigError(
            f"{directory}: not a sweep directory (no {SWEEP_FILE}); give --storage"
        )
    url = storage or record["storage"]
    if "***" in url:
        raise SweepConfigError(f"{url}: the password is not stored; give --storage URL again")
    # as for a sweep: the directory is runs/sweeps/<study> unless told otherwise
    name = study_name or record.get("study") or directory.name
    opened = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError as err:
        there = sorted(s.study_name for s in optuna.get_all_study_summaries(opened))
        hint = f"; studies there: {', '.join(there)} (choose one with --study)" if there else ""
        raise SweepConfigError(f"no study {name!r} in {printable_storage(url)}{hint}") from err
