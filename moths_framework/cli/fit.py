"""``moths-fit``: see :mod:`moths_framework.train.cli`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from moths_framework.cli.lightning import run_command

if TYPE_CHECKING:
    from moths_framework.train.cli import MothsCLI


def _fit(cli: MothsCLI) -> None:
    from moths_framework.train.cli import run_fit  # torch: not for a --help from the cache

    run_fit(cli)


def main(args: list[str] | None = None) -> int:
    return run_command("fit", args, _fit)
