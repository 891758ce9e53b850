"""``moths-hierarchy``: read a hierarchy CSV (and optionally a data folder) and summarise it."""

from __future__ import annotations

import argparse
import sys

from moths_framework.data.sources import DataSourceError, ImageFolder
from moths_framework.hierarchy import (
    DEFAULT_PLACEHOLDERS,
    OTHER,
    CsvHierarchy,
    HierarchyError,
    LabelHierarchy,
    canonical_name,
)

_LISTED = 5  # names shown per line before "and N more"


def _some(names: list[str]) -> str:
    more = f", and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


def _summary(hierarchy: LabelHierarchy, counts: dict[str, int] | None) -> str:
    lines = ["classes per rank (Other included):"]
    lines += [f"  {rank:<10}{n:>6}" for rank, n in hierarchy.num_classes().items()]
    for rank, species in hierarchy.unknown().items():
        lines.append(f"unknown {rank} ({OTHER} there): {len(species)} species: {_some(species)}")
    if counts is not None:
        kept = sum(n for s, n in counts.items() if canonical_name(s) not in hierarchy.bundled)
        lines.append(f"images: {sum(counts.values())} ({kept} in species classes)")
        if hierarchy.bundled:
            lines.append(f"bundled into {OTHER}: {', '.join(hierarchy.bundled)}")
    return "\n".join(lines)


def _nesting_warnings(hierarchy: LabelHierarchy) -> list[str]:
    warnings = []
    for (rank, broader), parents in hierarchy.nesting_conflicts().items():
        examples = [f"{name} ({', '.join(p)})" for name, p in parents.items()]
        warnings.append(
            f"warning: {rank} is not nested in {broader}: {len(parents)} {rank} name(s) "
            f"sit under several: {_some(examples)}"
        )
    return warnings


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moths-hierarchy",
        description="Summarise a label hierarchy CSV, optionally against a data folder.",
    )
    parser.add_argument("csv", help="hierarchy file (seed ';' form or plain CSV with rank columns)")
    parser.add_argument("--data", help="image folder <root>/<species>/<image> to count species")
    parser.add_argument("--min-samples", type=int, default=0, help="bundle rarer species")
    parser.add_argument(
        "--placeholder",
        action="append",
        metavar="NAME",
        help="a name meaning 'unknown at this rank' (repeatable; replaces the default "
        f"{', '.join(DEFAULT_PLACEHOLDERS)}; an empty name always means unknown)",
    )
    parser.add_argument("--json", action="store_true", help="print the hierarchy as JSON")
    opts = parser.parse_args(args)
    try:
        counts = dict(ImageFolder(opts.data).species_counts()) if opts.data else None
        source = CsvHierarchy(opts.csv, placeholders=opts.placeholder)
        hierarchy = source.build(counts, opts.min_samples)
    except (HierarchyError, DataSourceError) as err:
        print(f"moths-hierarchy: {err}", file=sys.stderr)
        return 2
    if opts.json:
        print(hierarchy.to_json())
        return 0
    print(_summary(hierarchy, counts))
    for warning in _nesting_warnings(hierarchy):
        print(f"moths-hierarchy: {warning}", file=sys.stderr)
    return 0
