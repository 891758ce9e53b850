"""``moths-test``: see :mod:`moths_framework.train.cli`."""

from __future__ import annotations

from moths_framework.cli.lightning import run_command


def main(args: list[str] | None = None) -> int:
    return run_command("test", args)
