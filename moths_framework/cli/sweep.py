"""``moths-sweep``: hyper-parameter search (Optuna) where every trial is a ``moths-fit`` run.

    moths-sweep --config configs/optim.yaml [--storage URL] [--study NAME]
                [--n-trials N] [--timeout S] [--dir SWEEP_DIR] [moths-fit options ...]
    moths-sweep --report SWEEP_DIR [--storage URL] [--study NAME]

The same command started on several machines (with one ``--storage`` URL)
makes several workers of one study. Re-running it continues the study.
"""

from __future__ import annotations

import argparse
import logging
import sys

from moths_framework.output_folders import OutputFolderError

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moths-sweep",
        description="Search moths-fit hyper-parameters with Optuna. Options not listed here "
        "(e.g. --trainer.accelerator gpu) go to every trial's moths-fit.",
        allow_abbrev=False,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="optim config: a fit config (or base:) plus sweep:")
    what.add_argument("--report", metavar="SWEEP_DIR", help="only report on an existing sweep")
    parser.add_argument(
        "--storage",
        help="SQLAlchemy URL (postgresql://user:pass@host/db) or a journal file path "
        "ending in .log; default sqlite:///SWEEP_DIR/study.db",
    )
    parser.add_argument("--study", help="study name; default: the config file's name")
    parser.add_argument("--dir", help="sweep directory; default runs/sweeps/<study>")
    parser.add_argument("--n-trials", type=int, help="trials this worker runs (default: config)")
    parser.add_argument("--timeout", type=float, help="seconds this worker runs (default: config)")
    return parser


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from moths_framework.sweep import load_study, write_report

    study = load_study(args.report, storage=args.storage, study_name=args.study)
    print(write_report(study, Path(args.report)))
    return 0


def _sweep(args: argparse.Namespace, fit_overrides: list[str]) -> int:
    from moths_framework.sweep import prepare_sweep, write_report
    from moths_framework.sweep.study import printable_storage

    sweep = prepare_sweep(
        args.config,
        storage=args.storage,
        study_name=args.study,
        sweep_dir=args.dir,
        n_trials=args.n_trials,
        timeout=args.timeout,
        fit_overrides=fit_overrides,
    )
    code = 0
    try:
        sweep.run()
    except KeyboardInterrupt:
        print(
            f"\nmoths-sweep: interrupted; the study keeps its {len(sweep.study.trials)} trials. "
            "Run the same command again to continue it.",
            file=sys.stderr,
        )
        code = EXIT_INTERRUPTED
    print(write_report(sweep.study, sweep.sweep_dir))
    print(f"dashboard: optuna-dashboard {printable_storage(sweep.storage)}")
    return code


def main(args: list[str] | None = None) -> int:
    parsed, rest = _parser().parse_known_args(args)
    bad = [a for a in rest if a.startswith("-") and not a.startswith("--")]
    if parsed.report and rest or bad:
        print(f"moths-sweep: error: unrecognized arguments: {' '.join(rest)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Imported once parsed: the sweep package imports torch, which --help does not need.
    from moths_framework.sweep.settings import SweepConfigError

    try:
        return _report(parsed) if parsed.report else _sweep(parsed, rest)
    except (SweepConfigError, OutputFolderError) as err:
        print(f"moths-sweep: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
