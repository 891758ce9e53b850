"""``moths-hierarchy``: read a hierarchy CSV (and optionally a data folder) and summarise it."""

from __future__ import annotations

import argparse
import sys

from moths_framework.data.sources import DataSourceError, ImageFolder
from moths_framework.hierarchy import OTHER, HierarchyError, LabelHierarchy


def _summary(hierarchy: LabelHierarchy, counts: dict[str, int] | None) -> str:
    lines = ["classes per rank (Other included):"]
    lines += [f"  {rank:<10}{n:>6}" for rank, n in hierarchy.num_classes().items()]
    if counts is not None:
        kept = sum(n for s, n in counts.items() if s.strip() not in hierarchy.bundled)
        lines.append(f"images: {sum(counts.values())} ({kept} in species classes)")
        if hierarchy.bundled:
            lines.append(f"bundled into {OTHER}: {', '.join(hierarchy.bundled)}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moths-hierarchy",
        description="Summarise a label hierarchy CSV, optionally against a data folder.",
    )
    parser.add_argument("csv", help="hierarchy file (seed ';' form or plain CSV with rank columns)")
    parser.add_argument("--data", help="image folder <root>/<species>/<image> to count species")
    parser.add_argument("--min-samples", type=int, default=0, help="bundle rarer species")
    parser.add_argument("--json", action="store_true", help="print the hierarchy as JSON")
    opts = parser.parse_args(args)
    try:
        counts = dict(ImageFolder(opts.data).species_counts()) if opts.data else None
        hierarchy = LabelHierarchy.from_csv(opts.csv, counts, opts.min_samples)
    except (HierarchyError, DataSourceError) as err:
        print(f"moths-hierarchy: {err}", file=sys.stderr)
        return 2
    print(hierarchy.to_json() if opts.json else _summary(hierarchy, counts))
    return 0
