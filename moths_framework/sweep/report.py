"""The sweep's report: trials table (best first), ``best.yaml``, plots.

Everything comes from the study's storage, so ``moths-sweep --report`` works
on any machine that reaches the storage, whichever worker ran the trials. The
files are recorded in the sweep directory's ``.moths-output.json``; a file of
the same name that ``moths-sweep`` did not write stops the report (see
:mod:`moths_framework.output_folders`).
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from moths_framework.atomic_files import replaced_atomically, write_text_atomically
from moths_framework.csv_cells import spreadsheet_safe_row
from moths_framework.output_folders import check_may_overwrite, record_written

__all__ = [
    "REPORT_FILES",
    "SWEEP_WRITER",
    "ranked_trials",
    "trials_table",
    "write_best_config",
    "write_plots",
    "write_report",
]

SWEEP_WRITER = "moths-sweep"  # the command the sweep directory's files are recorded as written by
REPORT_FILES = ("trials.csv", "best.yaml", "history.png", "importance.png")

_STATE_ORDER = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING]


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials best first, then pruned, running, waiting and failed ones by number."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def key(trial: FrozenTrial) -> tuple[int, float, int]:
        rank = _STATE_ORDER.index(trial.state) if trial.state in _STATE_ORDER else 9
        value = sign * trial.value if trial.state == TrialState.COMPLETE else 0.0
        return rank, value, trial.number

    return sorted(study.get_trials(deepcopy=False), key=key)


def _short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key ends with."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if parts[-1].isdigit() and n == 1:
                continue  # "0" alone says nothing
            if not any(other != key and other.endswith("." + suffix) for other in keys):
                names[key] = suffix
                break
        else:
            names[key] = key
    return names


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _row(trial: FrozenTrial, keys: list[str]) -> list[str]:
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    duration = f"{trial.duration.total_seconds():.0f}s" if trial.duration else "-"
    note = trial.user_attrs.get("error", "")
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        note = f"pruned after epoch {max(trial.intermediate_values)}"
    params = [_format(trial.params[k]) if k in trial.params else "-" for k in keys]
    return [str(trial.number), trial.state.name.lower(), value, duration, *params, note]


def _param_keys(trials: list[FrozenTrial]) -> list[str]:
    return list(dict.fromkeys(k for t in trials for k in t.params))


def trials_table(study: optuna.Study) -> str:
    """A plain-text table: trial, state, metric, duration, one column per parameter, note."""
    trials = ranked_trials(study)
    keys = _param_keys(trials)
    short = _short_names(keys)
    metric = study.user_attrs.get("metric", "value")
    rows = [["trial", "state", metric, "duration", *(short[k] for k in keys), "note"]]
    rows += [_row(t, keys) for t in trials]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ).rstrip()


def _write_trials_csv(study: optuna.Study, path: Path) -> None:
    trials = ranked_trials(study)
    keys = _param_keys(trials)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "state", "value", "duration_s", *keys, "note", "run_dir"])
    for t in trials:
        row = _row(t, keys)
        duration = f"{t.duration.total_seconds():.1f}" if t.duration else ""
        params = [t.params.get(k, "") for k in keys]
        cells = [t.number, row[1], t.value, duration, *params, row[-1],
                 t.user_attrs.get("run_dir", "")]  # fmt: skip
        writer.writerow(spreadsheet_safe_row(cells))  # names and paths: no spreadsheet formulas
    write_text_atomically(path, out.getvalue())


def write_best_config(study: optuna.Study, path: Path) -> FrozenTrial | None:
    """``best.yaml``: the best complete trial's full fit config, ready for ``moths-fit --config``.

    Its run directory is cleared, so a run of it gets a fresh ``runs/<timestamp>``
    rather than writing over the trial's. Returns the trial, or None if no
    trial completed.
    """
    complete = [t for t in ranked_trials(study) if t.state == TrialState.COMPLETE]
    best = next((t for t in complete if "config" in t.user_attrs), None)
    if best is None:
        return None
    config = yaml.safe_load(best.user_attrs["config"])
    config.setdefault("trainer", {})["default_root_dir"] = None
    header = (
        f"# Best trial {best.number} of study {study.study_name}: "
        f"{study.user_attrs.get('metric', 'value')} = {best.value:.4f}\n"
        f"# Its run: {best.user_attrs.get('run_dir', '?')}\n"
    )
    write_text_atomically(path, header + yaml.safe_dump(config, sort_keys=False))
    return best


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[str]:
    """``history.png`` and ``importance.png``; returns one line per plot written or skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    wanted = [("history.png", plots.plot_optimization_history, 1),
              ("importance.png", plots.plot_param_importances, 2)]  # fmt: skip
    lines = []
    for name, plot, needed in wanted:
        if len(complete) < needed:
            lines.append(f"{name}: skipped, needs {needed} complete trial(s), has {len(complete)}")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
            with replaced_atomically(sweep_dir / name) as temporary:
                axes.figure.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
            lines.append(f"{name}: {sweep_dir / name}")
        except (ValueError, RuntimeError) as err:  # e.g. every trial had the same values
            lines.append(f"{name}: skipped, {err}")
    return lines


def write_report(study: optuna.Study, sweep_dir: Path) -> str:
    """Write ``trials.csv``, ``best.yaml`` and the plots into ``sweep_dir``; returns the
    text to print (the table, then where each file went).

    Raises:
        OutputFolderError: one of these files exists and moths-sweep did not write
            it (checked before anything is written).
    """
    check_may_overwrite(sweep_dir, REPORT_FILES, SWEEP_WRITER, "--dir")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # Recorded before they are written: a worker finishing at the same time finds them ours.
    record_written(sweep_dir, REPORT_FILES, SWEEP_WRITER)
    _write_trials_csv(study, sweep_dir / "trials.csv")
    lines = [trials_table(study), ""]
    best = write_best_config(study, sweep_dir / "best.yaml")
    if best is None:
        lines.append("best.yaml: not written, no trial completed")
    else:
        lines.append(f"best trial {best.number}: {best.value:.4f}  ->  {sweep_dir / 'best.yaml'}")
    lines += write_plots(study, sweep_dir)
    lines.append(f"trials.csv: {sweep_dir / 'trials.csv'}")
    return "\n".join(lines)
