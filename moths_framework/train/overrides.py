"""Override one item of a YAML list: ``--data.train_transforms.0.init_args.size 64``.

jsonargparse replaces or appends to lists but does not address an item by
index. We parse once to get the resolved list, apply the indexed changes, and
pass the whole list back as one ordinary override, so the final parse checks
types and ``--print_config`` shows the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

__all__ = ["IndexOverride", "expand_index_overrides", "split_index_overrides"]

_INDEXED = re.compile(
    r"^--(?P<key>[\w.]+?)\.(?P<index>\d+)(?:\.(?P<path>[\w.]+))?(?:=(?P<value>.*))?$"
)


class IndexOverride:
    """``--<key>.<index>[.<path>] <value>``."""

    def __init__(self, key: str, index: int, path: str, value: str) -> None:
        self.key, self.index, self.path, self.value = key, index, path, value

    def apply(self, items: list[Any]) -> None:
        if not -len(items) <= self.index < len(items):
            raise ValueError(
                f"--{self.key}.{self.index}: the list {self.key} has only {len(items)} items"
            )
        value = yaml.safe_load(self.value)
        if not self.path:
            items[self.index] = value
            return
        node = items[self.index] = _tuples_as_lists(items[self.index])
        *parents, last = self.path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        # an index inside the item too: --data.train_transforms.0.init_args.scale.0 0.3
        node[int(last) if isinstance(node, list) else last] = value


def _tuples_as_lists(value: Any) -> Any:
    """A resolved item with its tuples (e.g. ``scale``) as lists, so an index can set them."""
    if isinstance(value, dict):
        return {k: _tuples_as_lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tuples_as_lists(v) for v in value]
    return value


def split_index_overrides(args: list[str]) -> tuple[list[str], list[IndexOverride]]:
    """Separate indexed list overrides from the other arguments."""
    rest: list[str] = []
    overrides: list[IndexOverride] = []
    i = 0
    while i < len(args):
        match = _INDEXED.match(args[i])
        if not match:
            rest.append(args[i])
            i += 1
            continue
        value = match["value"]
        if value is None:
            if i + 1 >= len(args):
                raise ValueError(f"{args[i]} needs a value")
            value = args[i + 1]
            i += 1
        overrides.append(
            IndexOverride(match["key"], int(match["index"]), match["path"] or "", value)
        )
        i += 1
    return rest, overrides


def expand_index_overrides(
    args: list[str], resolve: Callable[[list[str], str], list[Any]]
) -> list[str]:
    """Rewrite indexed overrides into whole-list overrides.

    Args:
        args: command-line arguments.
        resolve: ``resolve(args, key)`` returns the list at ``key`` (as plain
            dicts) after parsing ``args``.
    """
    rest, overrides = split_index_overrides(args)
    if not overrides:
        return args
    parse_args = [a for a in rest if not a.startswith("--print_config")]
    for key in dict.fromkeys(o.key for o in overrides):
        items = resolve(parse_args, key)
        if not isinstance(items, list):
            raise ValueError(f"--{key}.<index>: {key} is not a list in the config")
        for o in (o for o in overrides if o.key == key):
            o.apply(items)
        rest.append(f"--{key}={json.dumps(items)}")
    return rest
