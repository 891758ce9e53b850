"""``moths-fit``: see :mod:`moths_framework.train.cli`."""

from __future__ import annotations

from moths_framework.cli.lightning import run_command
from moths_framework.train.cli import run_fit


def main(args: list[str] | None = None) -> int:
    return run_command("fit", args, run_fit)
