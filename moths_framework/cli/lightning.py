"""The one-line error shell around :mod:`moths_framework.train.cli`, for moths-fit,
moths-validate, moths-test, moths-predict and moths-calibrate.

:func:`run_command` loads the plugins, builds the command's
:class:`~moths_framework.train.cli.MothsCLI` (or, for a detector's config, its
:class:`~moths_framework.train.detector_cli.DetectorCLI`) and runs it; a mistake the user can
cause (a bad config, a missing file, an unknown class) is printed as one line,
exit code 2, no traceback. A ``--help`` is printed from the cache of help texts when it
holds this one (:mod:`moths_framework.cli.help_cache`): nothing here imports torch until
the parser is built.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from moths_framework.cli.help_cache import answer_help

if TYPE_CHECKING:
    from moths_framework.train.cli import MothsCLI

__all__ = ["run_command", "user_errors"]


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user causes: printed as one line, exit code 2, no traceback."""
    # Imported here: a --help answered from the cache imports none of them (nor torch).
    from moths_framework import plugins
    from moths_framework.data.coco import CocoError
    from moths_framework.data.datamodule import TransformError
    from moths_framework.data.frame_dataset import FrameSizeError
    from moths_framework.data.sources import DataSourceError
    from moths_framework.hierarchy import HierarchyError
    from moths_framework.model.backbone import BackboneError
    from moths_framework.model.checkpoint import CheckpointError
    from moths_framework.model.detector import DetectorError
    from moths_framework.model.warm_start import WarmStartError
    from moths_framework.output_folders import OutputFolderError
    from moths_framework.train.task import ConfigTaskError

    return (
        BackboneError,
        CheckpointError,
        CocoError,
        ConfigTaskError,
        DataSourceError,
        DetectorError,
        FrameSizeError,
        HierarchyError,
        plugins.PluginError,
        FileNotFoundError,
        OutputFolderError,
        TransformError,
        WarmStartError,
    )


def _config_error(command: str, err: Exception) -> str:
    """One readable message for a config jsonargparse rejected."""
    from moths_framework import plugins

    noise = ("Expected a path but", "Does not validate against any", "Subtypes:", "Errors:")
    lines = [line.strip(" -") for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    message = " ".join(lines[:3])
    for group in plugins.GROUPS:  # the hint on a bad class_path under a plugin's key
        if f'"{group.yaml_key}"' in lines[0]:
            available = plugins.available(group.name).values()
            names = [info.value.rpartition(":")[2] for info in available]
            message += f"\n  installed {group.name.replace('_', ' ')}: {', '.join(sorted(names))}"
    return f"{message}\n  (moths-{command} --help lists every option)"


def _no_adverts(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def _trust_flags(args: list[str] | None) -> tuple[list[str] | None, bool, bool]:
    """``args`` less ``--trust-checkpoint`` and ``--allow-insecure-http``, and whether each
    was given. They are taken from the command line only: no config file can trust for you."""
    from moths_framework.model.trust import TRUST_FLAG
    from moths_framework.zoo.transport import INSECURE_FLAG

    given = list(sys.argv[1:] if args is None else args)
    trust, insecure = TRUST_FLAG in given, INSECURE_FLAG in given
    if not (trust or insecure):
        return args, False, False
    # LightningCLI warns when args are passed beside sys.argv; these are sys.argv's own.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter")
    return [a for a in given if a not in (TRUST_FLAG, INSECURE_FLAG)], trust, insecure


def run_command(
    command: str, args: list[str] | None = None, run: Callable[[MothsCLI], None] | None = None
) -> int:
    """Parse, build and run one command; returns the exit code. A ``--help`` may be
    answered from the cache of help texts (:mod:`moths_framework.cli.help_cache`).

    Args:
        command: ``fit``, ``validate``, ``test`` or ``predict`` (names the program).
        args: command-line arguments; default ``sys.argv[1:]``. ``--trust-checkpoint``
            and ``--allow-insecure-http`` among them apply to the whole command.
        run: what to do with the built CLI; default: the Lightning entry point of
            that name with ``--ckpt_path``.
    """
    given = list(sys.argv[1:] if args is None else args)
    return answer_help(f"moths-{command}", given, lambda: _run_command(command, args, run))


def _run_command(
    command: str, args: list[str] | None, run: Callable[[MothsCLI], None] | None
) -> int:
    from jsonargparse import ArgumentError

    from moths_framework import plugins
    from moths_framework.model.trust import trusting_checkpoints
    from moths_framework.train.cli import run_entry_point
    from moths_framework.train.cli_for_task import build_cli
    from moths_framework.zoo.transport import allowing_insecure_http

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Lightning advertises its cloud services on every run; our output stays about the run.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_adverts)
    # The run directory holds config.yaml before the first checkpoint; that is expected.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # Lightning 2.6 on torch 2.14 warns about its own use of a torch internal.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Evaluating a checkpoint needs none of the callbacks that wrote it.
    warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks")
    args, trust, insecure = _trust_flags(args)
    errors = user_errors()
    try:
        plugins.load_all()
        with trusting_checkpoints(trust), allowing_insecure_http(insecure):
            cli = build_cli(command, args)
            (run or run_entry_point)(cli)
    except errors as err:
        print(f"moths-{command}: error: {err}", file=sys.stderr)
        return 2
    except ArgumentError as err:
        print(f"moths-{command}: error: {_config_error(command, err)}", file=sys.stderr)
        return 2
    except ValueError as err:  # jsonargparse wraps what a link raises (the hierarchy's)
        cause = err.__cause__
        if not isinstance(cause, errors):
            raise
        print(f"moths-{command}: error: {cause}", file=sys.stderr)
        return 2
    return 0
