"""Which model a command's config trains: a classifier or a detector.

A classifier's config names ``model.backbone`` and ``data.source`` (and
``data.hierarchy``, ``unfreeze``); a detector's names ``model.detector`` and
``data.instances`` (a COCO file). :func:`config_task` reads the ``--config``
files and the dotted options of a command line before LightningCLI parses them,
so each command builds the one CLI that knows its keys
(:func:`~moths_framework.train.cli_for_task.build_cli`); a config with parts of
both is refused in one line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml

from moths_framework.inference.detector_metadata import DETECTION
from moths_framework.inference.metadata import CLASSIFICATION

__all__ = ["CLASSIFICATION", "DETECTION", "ConfigTaskError", "config_task", "refuse_detector"]

Task = Literal["classification", "detection"]

# The keys that say which model a config is for (dotted; a longer option counts for its key).
_PARTS: dict[str, Task] = {
    "model.detector": DETECTION,
    "data.instances": DETECTION,
    "model.backbone": CLASSIFICATION,
    "data.source": CLASSIFICATION,
    "data.hierarchy": CLASSIFICATION,
    "unfreeze": CLASSIFICATION,
}
_CONFIG_FLAGS = ("--config", "-c")
# Commands that only a classifier has.
_CLASSIFIER_COMMANDS = {"calibrate": "a detector's score threshold is model.detector's "
                        "score_threshold"}  # fmt: skip


class ConfigTaskError(ValueError):
    """A config with parts of a classifier's and of a detector's, or a command that
    the model it names does not have."""


def config_task(args: list[str] | None = None) -> Task:
    """``detection`` when the configs and options in ``args`` name a detector's parts,
    else ``classification`` (also when they name neither, e.g. ``--help``).

    Raises:
        ConfigTaskError: they name parts of both (one line naming each).
    """
    found: dict[str, str] = {}  # dotted key -> where it was named
    for where, keys in _named_keys(list(sys.argv[1:] if args is None else args)):
        for key in keys:
            for part in _PARTS:
                if key == part or key.startswith(f"{part}."):
                    found.setdefault(part, where)
    tasks = {_PARTS[part] for part in found}
    if len(tasks) < 2:
        return tasks.pop() if tasks else CLASSIFICATION
    detector = [f"{k} ({w})" for k, w in found.items() if _PARTS[k] == DETECTION]
    classifier = [f"{k} ({w})" for k, w in found.items() if _PARTS[k] == CLASSIFICATION]
    raise ConfigTaskError(
        f"the config mixes a detector's parts, {', '.join(detector)}, with a classifier's, "
        f"{', '.join(classifier)}: a detector trains from model.detector and data.instances "
        "(see configs/detector-dev.yaml), a classifier from model.backbone and data.source "
        "(configs/dev.yaml)"
    )


def refuse_detector(command: str) -> None:
    """Raise :class:`ConfigTaskError` when ``command`` has no detector form."""
    if command in _CLASSIFIER_COMMANDS:
        raise ConfigTaskError(
            f"moths-{command} is for classifiers and the config names a detector "
            f"({_CLASSIFIER_COMMANDS[command]})"
        )


def _named_keys(args: list[str]) -> list[tuple[str, list[str]]]:
    """``(where, dotted keys)`` of each config file and each ``--a.b`` option in ``args``."""
    named: list[tuple[str, list[str]]] = []
    for i, arg in enumerate(args):
        flag, equals, value = arg.partition("=")
        if flag in _CONFIG_FLAGS:
            value = value if equals else (args[i + 1] if i + 1 < len(args) else "")
            named.append((value, _dotted_keys(_read_config(value))))
        elif arg.startswith("--") and not arg.startswith("--config"):
            key = flag[2:]
            named.append((f"--{key}", [key]))
    return named


def _read_config(value: str) -> Any:
    """A ``--config`` value's content: the file's YAML, or the value itself as YAML (as
    jsonargparse takes it); ``None`` when it is neither (jsonargparse reports that)."""
    try:
        text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
        return yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError):
        return None


def _dotted_keys(tree: Any, prefix: str = "") -> list[str]:
    """Every key path of a YAML tree down to two levels (``model.detector``), dotted; a
    key set to ``null`` names nothing (``model.backbone: null``)."""
    if not isinstance(tree, dict):
        return []
    keys = []
    for key, value in tree.items():
        if value is None:
            continue
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if not prefix:
            keys.extend(_dotted_keys(value, f"{dotted}."))
    return keys
