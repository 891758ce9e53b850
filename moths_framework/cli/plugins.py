"""``moths-plugins``: list every installed plugin, whether it loads, and why not."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from moths_framework.plugins import GROUPS, PluginStatus, status

_COLUMNS = ("name", "object", "distribution", "version", "status")


def _row(s: PluginStatus) -> tuple[str, ...]:
    i = s.info
    return (i.name, i.value, i.distribution, i.version, "ok" if s.ok else "error")


def _table(statuses: list[PluginStatus]) -> str:
    lines: list[str] = []
    for group in GROUPS:
        rows = [_row(s) for s in statuses if s.info.group == group]
        lines.append(f"{group} ({len(rows)})")
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


def main(args: list[str] | None = None) -> int:
    """List plugins; exit code 1 when any plugin fails to load."""
    parser = argparse.ArgumentParser(
        prog="moths-plugins", description="List installed moths-framework plugins."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    opts = parser.parse_args(args)
    statuses = status()
    if opts.json:
        print(json.dumps([{**asdict(s.info), "error": s.error} for s in statuses], indent=2))
    else:
        print(_table(statuses))
    return 0 if all(s.ok for s in statuses) else 1
