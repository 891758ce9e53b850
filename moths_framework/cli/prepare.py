"""``moths-prepare``: validate, deduplicate and link source folders into an image folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moths_framework.data.prepare import PrepareError, PrepareSummary, prepare_sources


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def format_summary(summary: PrepareSummary, image_folder: Path) -> str:
    """The report printed after a run, e.g. ``kept 240 images of 9 species (12 new, 0 removed)``."""
    s = summary
    reasons = ", ".join(f"{reason} {n}" for reason, n in s.rejected.items())
    lines = [
        f"prepared {image_folder} from {s.sources} source{'s' * (s.sources != 1)}"
        f" in {s.seconds:.1f} s",
        f"  kept     {s.kept:>6} images of {s.species} species ({s.new} new, {s.removed} removed)",
        f"  rejected {sum(s.rejected.values()):>6}" + (f" ({reasons})" if reasons else ""),
        f"  duplicates {s.duplicates:>4}",
        f"  conflicts  {s.conflicts:>4}",
        f"  cache    {s.decoded:>6} of {s.files} files decoded again",
    ]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moths-prepare",
        description=(
            "Check every image of SOURCE/<species>/<image> by decoding it, drop broken files, "
            "duplicates and images filed under two species, and write OUT/image_folder "
            "(symlinks), OUT/manifest.csv and OUT/rejected.csv. Re-runs only decode "
            "new or changed files. One run at a time per OUT (lock OUT/.prepare.lock)."
        ),
    )
    parser.add_argument("out", type=Path, help="output folder, e.g. test_data/")
    parser.add_argument("sources", type=Path, nargs="+", help="source folders, in priority order")
    parser.add_argument("--workers", type=_positive, help="decoding processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run is preparing OUT, wait for it (default: exit 2 at once)",
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="also read files and species folders a source links to from outside itself "
        "(default: skip them, listed in rejected.csv as symlink-outside-source)",
    )
    opts = parser.parse_args(args)
    try:
        summary = prepare_sources(
            opts.out,
            opts.sources,
            workers=opts.workers,
            progress=not opts.no_progress,
            wait=opts.wait,
            follow_symlinks=opts.follow_symlinks,
        )
    except PrepareError as err:
        print(f"moths-prepare: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary, opts.out / "image_folder"))
    return 0
