"""``moths-calibrate``: fit temperatures, thresholds, tau and a novelty detector on a
checkpoint's validation images and write a calibrated checkpoint.

``moths-calibrate --ckpt RUN/best.ckpt [--output RUN/calibrated.ckpt] [--force]
[--target-precision 0.95] [--tau off|auto|P] [--config RUN/config.yaml] [--data.* ...]``.
Any ``--data.*``/``--trainer.*`` option goes to the run's config as in
``moths-predict``; another ``--data.source`` is a dedicated calibration set,
used whole.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from moths_framework.cli.lightning import run_command
from moths_framework.model.checkpoint_meta import CheckpointError
from moths_framework.model.trust import TRUST_FLAG, TRUST_HELP
from moths_framework.output_folders import check_may_overwrite, record_written

if TYPE_CHECKING:
    from moths_framework.train.cli import MothsCLI

# torch: imported by the functions that calibrate, not for --help.

_PROG = "moths-calibrate"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Calibrate a checkpoint on its validation images: temperature per rank, "
        "thresholds by target precision, optional tau-normalisation, a novel-species "
        "detector and the roll-up method. Other --data.*/--trainer.* options go to the run's "
        "config, as in moths-predict.",
    )
    parser.add_argument("--ckpt", required=True, help="the checkpoint, e.g. RUN/best.ckpt")
    parser.add_argument("--output", help="the calibrated checkpoint; default RUN/calibrated.ckpt")
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite --output if it exists and moths-calibrate wrote it",
    )
    parser.add_argument(
        "--config", help="the run's config; default config.yaml beside the checkpoint"
    )
    parser.add_argument(
        "--target-precision",
        type=float,
        default=0.95,
        help="precision the answers at each rank must reach on val (default 0.95)",
    )
    parser.add_argument(TRUST_FLAG, action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--tau",
        default="off",
        help="tau-normalisation of the species head: off (default), auto (P by val "
        "macro-F1) or a power P",
    )
    return parser


def _tau(value: str) -> str | float:
    if value in ("off", "auto"):
        return value
    try:
        power = float(value)
    except ValueError:
        power = -1.0
    if not 0.0 <= power <= 5.0:
        raise ValueError(f"--tau: expected off, auto or a power between 0 and 5, got {value!r}")
    return power


def _check(opts: argparse.Namespace) -> tuple[Path, Path, Path]:
    """(checkpoint, config, output); ValueError for a usage error."""
    ckpt = Path(opts.ckpt)
    if not ckpt.is_file():
        raise ValueError(f"checkpoint {ckpt} not found")
    config = Path(opts.config) if opts.config else ckpt.parent / "config.yaml"
    if not config.is_file():
        raise ValueError(f"config {config} not found: pass the run's config with --config")
    output = Path(opts.output) if opts.output else ckpt.parent / "calibrated.ckpt"
    if output.resolve() == ckpt.resolve():
        raise ValueError(f"--output {output} is the checkpoint itself: name another file")
    if os.path.lexists(output):
        if not opts.force:
            raise ValueError(f"{output} exists; pass --force to overwrite it")
        check_may_overwrite(output.parent, [output.name], _PROG)  # never a file of someone else
    if not 0.0 < opts.target_precision <= 1.0:
        raise ValueError(f"--target-precision must be in (0, 1], got {opts.target_precision}")
    return ckpt, config, output


def _calibrate(cli: MothsCLI, opts: argparse.Namespace, ckpt: Path, output: Path) -> None:
    from moths_framework.calibrate.calibration import calibrate_outputs
    from moths_framework.calibrate.run import (
        check_run_split,
        format_report,
        predict_outputs,
        species_head,
        training_counts,
        write_calibrated_checkpoint,
    )
    from moths_framework.cli.predict import default_split
    from moths_framework.model.checkpoint import checkpoint_meta

    assert cli.checkpoint is not None
    if cli.trainer.world_size > 1:
        raise CheckpointError(f"{_PROG} runs in one process: use --trainer.devices 1")
    tau = _tau(opts.tau)
    baked = checkpoint_meta(cli.checkpoint, ckpt).tau_power
    if baked and tau != "off":
        raise CheckpointError(
            f"{ckpt} already has tau P={baked} baked into its species head: calibrate the "
            "checkpoint it came from, or pass --tau off"
        )
    data, model = cli.datamodule, cli.model
    own_source = default_split(cli) == "test"
    if own_source:
        check_run_split(ckpt.parent, data)
    val = predict_outputs(cli.trainer, model, data, "val" if own_source else "all", ckpt)
    test = predict_outputs(cli.trainer, model, data, "test", ckpt) if own_source else None
    calibration = calibrate_outputs(
        model.hierarchy,
        val,
        test,
        species_head(model),
        training_counts(ckpt.parent, model.hierarchy, data if own_source else None),
        opts.target_precision,
        tau,
    )
    write_calibrated_checkpoint(cli.checkpoint, calibration, model.hierarchy.ranks[0], output)
    record_written(output.parent, [output.name], _PROG)
    print("\n".join(format_report(calibration)))
    print(f"{_PROG}: wrote {output}")


def main(args: list[str] | None = None) -> int:
    """Run ``moths-calibrate``; 0 on success, 2 on a usage error."""
    opts, rest = _parser().parse_known_args(args)
    try:
        ckpt, config, output = _check(opts)
        _tau(opts.tau)
    except ValueError as error:
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    # The arguments are rebuilt from ours on purpose, so LightningCLI's warning about
    # args given beside sys.argv does not apply.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
    lightning_args = ["--config", str(config), "--ckpt_path", str(ckpt), *rest]
    if opts.trust_checkpoint:
        lightning_args.append(TRUST_FLAG)  # run_command trusts for the whole command
    from moths_framework.calibrate.calibration import CalibrationError

    try:
        return run_command(
            "calibrate", lightning_args, lambda cli: _calibrate(cli, opts, ckpt, output)
        )
    except CalibrationError as error:  # a ValueError run_command passes on: ours to report
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
