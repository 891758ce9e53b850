"""``moths-plugins``: list every installed plugin, whether it loads, and why not;
``moths-plugins new`` writes a plugin package to start from.

Each plugin is listed by its ``class_path``, the full dotted path a YAML config
writes under the group's key (e.g. ``model.backbone``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from moths_framework import plugins
from moths_framework.plugins import PluginError, PluginStatus

_COLUMNS = ("name", "class_path", "distribution", "version", "status")


def _row(s: PluginStatus) -> tuple[str, ...]:
    i = s.info
    return (i.name, i.class_path, i.distribution, i.version, "ok" if s.ok else "error")


def _json_row(s: PluginStatus) -> dict[str, str | None]:
    return {**asdict(s.info), "class_path": s.info.class_path, "error": s.error}


def _table(statuses: list[PluginStatus]) -> str:
    lines: list[str] = []
    for group in plugins.GROUPS:
        rows = [_row(s) for s in statuses if s.info.group == group.entry_point_group]
        lines.append(f"{group.entry_point_group} ({len(rows)}), YAML key {group.yaml_key}")
        if not rows:
            lines.append("  (none installed)")
            continue
        widths = [max(len(c), *(len(r[k]) for r in rows)) for k, c in enumerate(_COLUMNS)]
        for row in [_COLUMNS, *rows]:
            cells = (v.ljust(w) for v, w in zip(row, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
    errors = [s for s in statuses if not s.ok]
    if errors:
        lines.append("errors:")
        lines += [f"  {s.info.group} {s.info.name}: {s.error}" for s in errors]
    return "\n".join(lines)


def _new(opts: argparse.Namespace) -> int:
    from moths_framework.plugin_scaffold import new_plugin

    try:
        root = new_plugin(opts.name, opts.group, opts.output)
    except PluginError as err:
        print(f"moths-plugins: {err}", file=sys.stderr)
        return 2
    print(f"wrote {root}/ (pyproject.toml, a module, a contract test); try it:")
    print(f"  pip install -e {root} && pytest {root}/tests")
    return 0


def main(args: list[str] | None = None) -> int:
    """List plugins (exit code 1 when any fails to load), or write a new plugin package."""
    parser = argparse.ArgumentParser(
        prog="moths-plugins", description="List installed moths-framework plugins."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="command")
    new = sub.add_parser("new", help="write a minimal plugin package (pyproject, module, test)")
    new.add_argument("name", help="plugin name, e.g. gbif (package moths-plugin-gbif)")
    new.add_argument("--group", required=True, choices=[group.name for group in plugins.GROUPS])
    new.add_argument("--output", type=Path, help="folder to create; default ./moths-plugin-NAME")
    opts = parser.parse_args(args)
    if opts.command == "new":
        return _new(opts)
    statuses = plugins.status()
    if opts.json:
        print(json.dumps([_json_row(s) for s in statuses], indent=2))
    else:
        print(_table(statuses))
    return 0 if all(s.ok for s in statuses) else 1
