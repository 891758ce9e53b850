"""``moths-track``: ``detections.csv`` to ``tracks.csv``, one track per moth per night.

Parses, then calls :mod:`moths_framework.nights` (times and deployments, linking,
the vote) and, with ``--truth``, :mod:`moths_framework.evaluate.track_evaluation`.
Imports no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from moths_framework.inference.feature_file import read_features
from moths_framework.inference.prediction import check_thresholds
from moths_framework.inference.thresholds import parse_thresholds
from moths_framework.nights.deployments import Deployments, read_deployments
from moths_framework.nights.detection_table import read_detections
from moths_framework.nights.frame_times import time_frames
from moths_framework.nights.night_tracks import (
    check_feature_rows,
    track_table,
    write_tracks,
    write_untimed,
)
from moths_framework.nights.sampled_nights import NIGHTS_CSV, sampled_nights, write_nights
from moths_framework.nights.timestamps import DEFAULT_NAME_PATTERN, NamePattern
from moths_framework.nights.track_vote import specificity_order
from moths_framework.nights.tracking import CostWeights, TrackSettings
from moths_framework.output_folders import check_may_overwrite, record_written
from moths_framework.provenance import Run, read_provenance, sidecar_path

__all__ = ["main", "parser"]

PROG = "moths-track"
UNTIMED = "untimed_frames.csv"
REPORT, METRICS = "report.html", "track_metrics.json"


def parser() -> argparse.ArgumentParser:
    """The command line of ``moths-track``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Link the detections of moths-infer --detector across the frames of each "
        "night into tracks (one per moth) and give each track one answer.",
    )
    p.add_argument("detections", help="detections.csv from moths-infer --detector")
    p.add_argument("--output", required=True, help="tracks.csv to write")
    p.add_argument(
        "--features",
        help="the feature file moths-infer --features wrote with it (.npy or .parquet); "
        "without it, boxes alone link the frames",
    )
    p.add_argument(
        "--deployments",
        help="deployments.csv (deployment, latitude, longitude, trap_type[, timezone, folder]); "
        "default: a frame's deployment is its folder's name",
    )
    p.add_argument(
        "--name-pattern",
        default=DEFAULT_NAME_PATTERN,
        help="the time in frame file names, for frames without EXIF DateTimeOriginal "
        "(strftime codes, found anywhere in the name; default %%Y%%m%%d%%H%%M%%S)",
    )
    p.add_argument(
        "--max-gap",
        default="3",
        help="frames a track may miss and go on (N), or seconds since its last box (Ns, Nm); "
        "default 3",
    )
    p.add_argument(
        "--max-cost",
        type=float,
        default=TrackSettings.max_cost,
        help=f"the dearest link made, in [0, 1] (default {TrackSettings.max_cost})",
    )
    p.add_argument(
        "--cost",
        default="",
        metavar="TERM=W,...",
        help="weights of the link cost's terms: appearance, overlap, size, distance "
        "(default 1 each)",
    )
    p.add_argument(
        "--overlap",
        default=str(TrackSettings.overlap),
        metavar="F",
        help="a track whose boxes hold at least F of the area of the boxes of two other "
        "tracks, or overlap a stronger track's box by F of the smaller box, in most of its "
        "frames, is not counted as an individual (tracks.csv's track_uncounted says why); "
        f"'off': every track counts (default {TrackSettings.overlap})",
    )
    p.add_argument(
        "--thresholds",
        default="",
        metavar="RANK=P,...",
        help="the vote's roll-up thresholds; default: those moths-infer used (its run.json), "
        "else 0.5",
    )
    p.add_argument(
        "--truth",
        help="a truth CSV (path, identity, species, x1, y1, x2, y2): score the tracks (MOTA, "
        f"IDF1, counts per species per night) into {REPORT} and {METRICS} beside --output",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(args: list[str] | None = None) -> int:
    """Run ``moths-track``; 0 when tracks were written, 1 when no frame has a time, 2 on a
    usage error (bad input, missing columns, features that do not fit)."""
    opts = parser().parse_args(args)
    run = Run(PROG, args)
    try:
        return _track(opts, run)
    except (OSError, ValueError) as error:  # TrackInputError, DeploymentError: ValueErrors
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2


def _track(opts: argparse.Namespace, run: Run) -> int:
    started = time.perf_counter()
    settings = _settings(opts)
    names = NamePattern(opts.name_pattern)
    output = Path(opts.output)
    ours = [output.name, NIGHTS_CSV, UNTIMED, *([REPORT, METRICS] if opts.truth else [])]
    sidecars = [sidecar_path(output.parent / name).name for name in ours]
    check_may_overwrite(output.parent, [*ours, *sidecars], PROG)
    table = read_detections(opts.detections)
    features = read_features(opts.features) if opts.features else None
    check_feature_rows(table, features)
    deployments = read_deployments(opts.deployments) if opts.deployments else Deployments()
    order = specificity_order(table.ranks, table.names_seen()) if table.ranks else ()
    thresholds = _thresholds(opts, table.ranks)
    times, untimed = time_frames(
        table.searched_frames(), deployments, names, progress=not opts.no_progress
    )
    tracks = track_table(
        table, features, times, settings, order, thresholds, progress=not opts.no_progress
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_tracks(output, table, tracks)
    write_nights(output.parent / NIGHTS_CSV, sampled_nights(times.values()))
    written = [output.name, NIGHTS_CSV]
    record_written(output.parent, written, PROG)
    if not untimed:  # not a list left by an earlier run (checked ours above)
        (output.parent / UNTIMED).unlink(missing_ok=True)
        sidecar_path(output.parent / UNTIMED).unlink(missing_ok=True)
    else:
        write_untimed(output.parent / UNTIMED, untimed)
        written.append(UNTIMED)
        print(f"{PROG}: {len(untimed)} frame(s) without a time left out, listed in "
              f"{output.parent / UNTIMED}", file=sys.stderr)  # fmt: skip
    if opts.truth:
        written += _evaluate(opts, output, times)
    record_written(output.parent, written, PROG)
    for path in [opts.detections, *([opts.features] if opts.features else [])]:
        run.add_input(path)
    run.settings |= _recorded(opts, settings, thresholds, order)
    for name in written:  # every file of this run gets its record (one run id)
        run.write(output.parent / name)
    seconds = time.perf_counter() - started
    print(
        f"{PROG}: {len(tracks.cells)} detections in {tracks.frames} frames, {tracks.nights} "
        f"night(s): {tracks.tracks} tracks ({tracks.uncounted} not counted, see "
        f"track_uncounted); {len(untimed)} frame(s) without a time; "
        f"{seconds:.1f} s; wrote {output}"
    )
    return 0 if times else 1


def _settings(opts: argparse.Namespace) -> TrackSettings:
    gap = opts.max_gap.strip().lower()
    try:
        if gap.endswith(("s", "m")):
            seconds = float(gap[:-1]) * (60 if gap.endswith("m") else 1)
            frames = None
        else:
            seconds, frames = None, int(gap)
    except ValueError:
        raise ValueError(
            f"--max-gap {opts.max_gap!r}: N frames, or Ns / Nm (seconds, minutes)"
        ) from None
    weights = {}
    for part in filter(None, (p.strip() for p in opts.cost.split(","))):
        term, _, value = part.partition("=")
        if term.strip() not in ("appearance", "overlap", "size", "distance"):
            raise ValueError(f"--cost {part!r}: terms are appearance, overlap, size, distance")
        try:
            weights[term.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--cost {part!r}: the weight is not a number") from None
    overlap = opts.overlap.strip().lower()
    try:
        overlap = None if overlap == "off" else float(overlap)
    except ValueError:
        raise ValueError(f"--overlap {opts.overlap!r}: a share in (0, 1], or off") from None
    settings = TrackSettings(
        CostWeights(**weights), opts.max_cost, frames, seconds, overlap=overlap
    )
    try:
        settings.check()
    except ValueError as error:
        raise ValueError(f"{error} (--cost, --max-cost, --max-gap, --overlap)") from None
    return settings


def _thresholds(opts: argparse.Namespace, ranks: list[str]) -> dict[str, float]:
    """--thresholds, over moths-infer's (from detections.csv's run.json), over 0.5."""
    if not ranks:
        return {}
    record = read_provenance(opts.detections) or {}
    used = ((record.get("settings") or {}).get("classifier") or {}).get("thresholds") or {}
    try:
        given = parse_thresholds(opts.thresholds)
    except ValueError as error:
        raise ValueError(f"--thresholds: {error}") from None
    known = {rank: float(value) for rank, value in used.items() if rank in ranks}
    return check_thresholds(ranks, known | given)


def _evaluate(opts: argparse.Namespace, output: Path, times) -> list[str]:
    import csv

    from moths_framework.atomic_files import write_text_atomically
    from moths_framework.evaluate.track_evaluation import evaluate_tracks, read_truth
    from moths_framework.evaluate.track_report import render_track_report

    with output.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    frames = {p: (f"{t.deployment.id}/{t.night.isoformat()}", t.time.isoformat())
              for p, t in times.items()}  # fmt: skip
    evaluation = evaluate_tracks(rows, read_truth(opts.truth), frames)
    folder = output.parent
    write_text_atomically(folder / REPORT, render_track_report(evaluation, str(output)))
    summary = evaluation.summary() | {"per_night": evaluation.per_night}
    write_text_atomically(folder / METRICS, json.dumps(summary, indent=1) + "\n")
    print(
        f"{PROG}: against the truth: MOTA {evaluation.mota:.3f}, IDF1 {evaluation.idf1:.3f}, "
        f"count error {100 * evaluation.count_error:.1f}% (detections "
        f"{100 * evaluation.detection_count_error:.1f}%); wrote {folder / REPORT}"
    )
    return [REPORT, METRICS]


def _recorded(opts, settings: TrackSettings, thresholds, order) -> dict:
    weights = settings.weights
    return {
        "tracking": {
            "cost_weights": {
                "appearance": weights.appearance,
                "overlap": weights.overlap,
                "size": weights.size,
                "distance": weights.distance,
            },
            "max_cost": settings.max_cost,
            "max_gap_frames": settings.max_gap_frames,
            "max_gap_seconds": settings.max_gap_seconds,
            "overlap": settings.overlap,
            "name_pattern": opts.name_pattern,
            "deployments": opts.deployments,
            "features": opts.features is not None,
        },  # fmt: skip
        "vote": {"thresholds": thresholds, "ranks_by_specificity": list(order)},
    }
