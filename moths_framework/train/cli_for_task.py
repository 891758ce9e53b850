"""The LightningCLI a command line calls for: a classifier's or a detector's.

:func:`~moths_framework.train.task.config_task` reads which from the config files and
options before anything is parsed; each CLI is imported only when it is the one built.
"""

from __future__ import annotations

from typing import Any

from moths_framework.train.task import CLASSIFICATION, config_task, refuse_detector

__all__ = ["build_cli"]


def build_cli(command: str, args: list[str] | None = None) -> Any:
    """The :class:`~moths_framework.train.cli.MothsCLI` (a classifier) or
    :class:`~moths_framework.train.detector_cli.DetectorCLI` that ``args`` call for, built.

    Raises:
        ConfigTaskError: the config mixes both, or ``command`` has no detector form.
    """
    if config_task(args) == CLASSIFICATION:
        from moths_framework.train.cli import MothsCLI

        return MothsCLI(command, args)
    refuse_detector(command)
    from moths_framework.train.detector_cli import DetectorCLI

    return DetectorCLI(command, args)
