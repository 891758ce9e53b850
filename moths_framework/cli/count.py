"""``moths-count``: ``tracks.csv`` to ``occurrences.csv``, individuals per taxon per night.

Parses, then calls :mod:`moths_framework.occurrences.counts`; writes the CSV and its
``run.json``. Imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from moths_framework.nights.deployments import read_deployments
from moths_framework.occurrences.counts import (
    Occurrence,
    count_occurrences,
    uncounted_tracks,
    write_occurrences,
    write_uncounted,
)
from moths_framework.occurrences.taxa import TAXON, kind_of, kinds_in_words
from moths_framework.occurrences.tracks_csv import read_tracks
from moths_framework.output_folders import check_may_overwrite, record_written
from moths_framework.provenance import Run, sidecar_path

__all__ = ["main", "parser", "summary"]

PROG = "moths-count"
UNCOUNTED = "uncounted_tracks.csv"


def parser() -> argparse.ArgumentParser:
    """The command line of ``moths-count``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Count the individuals (tracks) of each taxon per deployment and night "
        "from moths-track's tracks.csv, into occurrences.csv.",
    )
    p.add_argument("tracks", help="tracks.csv from moths-track")
    p.add_argument(
        "--deployments",
        help="deployments.csv: each row of occurrences.csv gets its deployment's latitude, "
        "longitude and trap_type (every deployment of tracks.csv must be listed)",
    )
    p.add_argument(
        "--output",
        required=True,
        help="occurrences.csv to write; an existing file is overwritten only when moths-count "
        f"wrote it. Tracks moths-track marked as no moth of their own are listed in {UNCOUNTED} "
        "beside it",
    )
    return p


def main(args: list[str] | None = None) -> int:
    """Run ``moths-count``; 0 when occurrences.csv was written, 2 on a usage error
    (unreadable or malformed input, an output moths-count did not write)."""
    opts = parser().parse_args(args)
    run = Run(PROG, args)
    output = Path(opts.output)
    try:
        if output.is_dir():
            raise ValueError(f"--output {output} is a folder; name a .csv file")
        ours = [output.name, UNCOUNTED]
        sidecars = [sidecar_path(output.parent / name).name for name in ours]
        check_may_overwrite(output.parent, [*ours, *sidecars], PROG)
        rows = read_tracks(opts.tracks)
        deployments = read_deployments(opts.deployments) if opts.deployments else None
        occurrences = count_occurrences(rows, deployments)
        uncounted = uncounted_tracks(rows)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_occurrences(output, occurrences, with_deployments=deployments is not None)
        written = [output.name]
        if uncounted:
            write_uncounted(output.parent / UNCOUNTED, uncounted)
            written.append(UNCOUNTED)
        else:  # not a list left by an earlier run (checked ours above)
            (output.parent / UNCOUNTED).unlink(missing_ok=True)
            sidecar_path(output.parent / UNCOUNTED).unlink(missing_ok=True)
    except (OSError, ValueError) as error:  # TracksError, DeploymentError, OutputFolderError
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    record_written(output.parent, written, PROG)
    run.add_input(opts.tracks)
    if opts.deployments:
        run.add_input(opts.deployments)
    for name in written:
        run.write(output.parent / name)
    if uncounted:
        reasons = Counter(track.reason.partition(":")[0] for track in uncounted)
        words = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        print(f"{PROG}: {len(uncounted)} track(s) not counted as individuals ({words}), "
              f"listed in {output.parent / UNCOUNTED}", file=sys.stderr)  # fmt: skip
    print(summary(occurrences, len(rows), PROG) + f"; wrote {output}")
    return 0


def summary(occurrences: Sequence[Occurrence], detections: int, prog: str) -> str:
    """One line: individuals, taxa, detections, nights and deployments, and how many
    individuals were ``Other``, non-moths or without an answer."""
    kinds: Counter[str] = Counter()
    for occurrence in occurrences:
        kinds[kind_of(occurrence.taxon)] += occurrence.individuals
    taxa = {o.taxon for o in occurrences if kind_of(o.taxon) == TAXON}
    nights = {(o.deployment, o.night) for o in occurrences}
    deployments = {o.deployment for o in occurrences}
    individuals = sum(o.individuals for o in occurrences)
    return (
        f"{prog}: {individuals} individual{'s' * (individuals != 1)} of {len(taxa)} "
        f"tax{'a' if len(taxa) != 1 else 'on'} in {detections} detections, {len(nights)} "
        f"night{'s' * (len(nights) != 1)} at {len(deployments)} "
        f"deployment{'s' * (len(deployments) != 1)} "
        f"({kinds_in_words(kinds, every_kind=True)})"
    )
