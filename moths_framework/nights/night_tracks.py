"""``detections.csv`` to ``tracks.csv``: every box placed in its night and linked into a track.

Frames are grouped by deployment and night and put in time order (frames with the
same time by path); frames the detector searched without finding anything count
as frames of the night, so a gap is measured in the frames really taken. Each
night is linked on its own (:func:`.tracking.link_frames`), each track answers
by :func:`.track_vote.vote`, and a track lying over other tracks' moths
(:func:`.overlapping_tracks.overlapping_tracks`) says so in ``track_uncounted``. The
columns added to ``detections.csv``'s are :data:`TRACK_COLUMNS`
(docs/reference/tracks-csv.md). No torch.
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from tqdm import tqdm

from moths_framework.atomic_files import write_csv_atomically
from moths_framework.csv_cells import spreadsheet_safe
from moths_framework.nights.detection_table import DetectionTable, TrackInputError
from moths_framework.nights.frame_times import FrameTime, UntimedFrame
from moths_framework.nights.overlapping_tracks import OVER_SEVERAL, Overlap, overlapping_tracks
from moths_framework.nights.track_vote import vote
from moths_framework.nights.tracking import FrameBoxes, TrackSettings, link_frames

__all__ = [
    "TRACK_COLUMNS",
    "Tracks",
    "check_feature_rows",
    "track_table",
    "write_tracks",
    "write_untimed",
]

TRACK_COLUMNS = (
    "deployment", "night", "timestamp", "track",
    "track_prediction", "track_prediction_rank", "track_prediction_prob", "track_confident",
    "track_uncounted",
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1)


@dataclass
class Tracks:
    """What tracking gave: the cells of :data:`TRACK_COLUMNS` for each row of
    ``detections.csv`` that is in a track (in file order), and the counts (``uncounted``:
    tracks not counted as individuals)."""

    cells: dict[int, list[str]] = field(default_factory=dict)
    tracks: int = 0
    uncounted: int = 0
    nights: int = 0
    frames: int = 0


def track_table(
    table: DetectionTable,
    features: np.ndarray | None,
    times: Mapping[str, FrameTime],
    settings: TrackSettings,
    order: Sequence[str],
    thresholds: Mapping[str, float],
    progress: bool = False,
) -> Tracks:
    """Link the boxes of ``table`` whose frames have a time into tracks.

    Args:
        table: the detections.
        features: ``[rows, F]``, row-aligned with ``table`` (``None``: no appearance term).
        times: frame path -> its place in a night (frames missing here are left out).
        settings: how boxes are linked.
        order: the classifier's ranks, most specific first (for the vote).
        thresholds: rank -> threshold (for the vote).
        progress: show a progress bar over the frames.

    Raises:
        TrackInputError: ``features`` does not have one row per row of ``table``.
    """
    check_feature_rows(table, features)
    paths = table.paths()
    by_frame: dict[str, list[int]] = defaultdict(list)
    for row in table.box_rows():
        by_frame[paths[row]].append(row)
    nights: dict[tuple[str, str], list[FrameTime]] = defaultdict(list)
    for path in table.searched_frames():
        if path in times:
            frame = times[path]
            nights[(frame.deployment.id, frame.night.isoformat())].append(frame)
    result = Tracks(nights=len(nights))
    scores = table.scores()
    total = sum(len(frames) for frames in nights.values())
    bar = tqdm(total=total, unit="frame", desc="tracks", file=sys.stderr, disable=not progress)
    with bar:
        for _, frames in sorted(nights.items()):
            frames.sort(key=lambda f: (f.time, f.path))
            _track_night(
                table, features, scores, frames, by_frame, settings, order, thresholds, result
            )
            result.frames += len(frames)
            bar.update(len(frames))
    return result


def check_feature_rows(table: DetectionTable, features: np.ndarray | None) -> None:
    """TrackInputError unless ``features`` has one row per row of ``table`` (or is ``None``)."""
    if features is not None and len(features) != len(table.rows):
        raise TrackInputError(
            f"the features have {len(features)} rows, {table.path} has {len(table.rows)}: "
            "give the features file moths-infer wrote with this detections.csv"
        )


def _track_night(table, features, scores, frames, by_frame, settings, order, thresholds, result):
    width, height = table.column("width"), table.column("height")
    night_boxes, night_rows = [], []
    for frame in frames:
        rows = by_frame.get(frame.path, [])
        boxes = table.boxes(rows) if rows else np.zeros((0, 4))
        diagonal = float(np.hypot(float(width[rows[0]]), float(height[rows[0]]))) if rows else 1.0
        vectors = features[rows] if features is not None else np.zeros((len(rows), 0))
        seconds = (frame.time - _EPOCH).total_seconds()
        night_boxes.append(FrameBoxes(seconds, diagonal, boxes, vectors, scores[rows]))
        night_rows.append((frame, rows))
    numbers = link_frames(night_boxes, settings)
    uncounted = {}
    if settings.overlap is not None:
        uncounted = overlapping_tracks(
            [f.boxes for f in night_boxes], numbers, [f.scores for f in night_boxes],
            settings.overlap,
        )  # fmt: skip
    members: dict[int, list[tuple[int, FrameTime]]] = defaultdict(list)
    for (frame, rows), assigned in zip(night_rows, numbers, strict=True):
        for row, number in zip(rows, assigned, strict=True):
            members[int(number)].append((row, frame))
    for number, rows in sorted(members.items()):
        frame = rows[0][1]
        prefix = f"{frame.deployment.id}/{frame.night.isoformat()}/"
        track = f"{prefix}{number + 1}"
        answer = vote([table.answer(r) for r, _ in rows], order, thresholds) if order else None
        tail = ["", "", "", ""]
        if answer is not None:
            confident = "true" if answer.confident else "false"
            prediction = spreadsheet_safe(answer.prediction)
            tail = [prediction, answer.rank, f"{answer.prob:.6f}", confident]
        why = _why(uncounted[number], prefix) if number in uncounted else ""
        tail = [*tail, spreadsheet_safe(why)]
        for row, member in rows:
            head = [member.deployment.id, member.night.isoformat(), member.iso_time(), track]
            result.cells[row] = [spreadsheet_safe(c) for c in head] + tail
    result.tracks += len(members)
    result.uncounted += len(uncounted)


def _why(overlap: Overlap, prefix: str) -> str:
    """``track_uncounted``'s words: ``over several moths: <track>, <track>`` or
    ``second box on a moth: <track>``."""
    tracks = overlap.tracks if overlap.kind == OVER_SEVERAL else overlap.tracks[:1]
    return f"{overlap.kind}: " + ", ".join(f"{prefix}{t + 1}" for t in tracks)


def write_tracks(path: str | os.PathLike, table: DetectionTable, tracks: Tracks) -> None:
    """``tracks.csv``: ``detections.csv``'s columns as written, then :data:`TRACK_COLUMNS`,
    one row per tracked detection in file order; atomically."""
    rows = ([*table.rows[row], *tracks.cells[row]] for row in sorted(tracks.cells))
    write_csv_atomically(path, [*table.columns, *TRACK_COLUMNS], rows)


def write_untimed(path: str | os.PathLike, untimed: Sequence[UntimedFrame]) -> None:
    """``untimed_frames.csv``: each frame left out (``path``, ``reason``); atomically."""
    rows = ([spreadsheet_safe(frame.path), spreadsheet_safe(frame.reason)] for frame in untimed)
    write_csv_atomically(path, ["path", "reason"], rows)
