"""Reading ``tracks.csv`` (what ``moths-track`` writes) for counting.

Only the columns a count needs are kept: where and when (``deployment``, ``night``,
``timestamp``), which track, the track's answer (``track_prediction``,
``track_prediction_rank``, ``track_prediction_prob``) and, per detection, its frame,
crop, detector class and how sure the classifier was of it (``prediction_prob``, else
the detector's ``detection_score``), to pick a track's best crop, what a moth filter
called it (``filter_class``), and why the track is not counted (``track_uncounted``;
a tracks.csv without the column counts every track). Columns are
described in docs/reference/tracks-csv.md. No torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from moths_framework.csv_cells import from_spreadsheet_safe
from moths_framework.csv_table import csv_table

__all__ = ["REQUIRED_COLUMNS", "TrackedDetection", "TracksError", "read_tracks"]

REQUIRED_COLUMNS = (
    "path", "deployment", "night", "timestamp", "track",
    "track_prediction", "track_prediction_rank", "track_prediction_prob",
)  # fmt: skip


# every column a count reads: the required ones and those it uses when present
_USED = (
    *REQUIRED_COLUMNS, "crop", "prediction", "prediction_prob", "detection_score",
    "detection_class", "filter_class", "track_uncounted",
)  # fmt: skip


class TracksError(ValueError):
    """A ``tracks.csv`` that cannot be counted; the message is one line."""


@dataclass(frozen=True)
class TrackedDetection:
    """One row of ``tracks.csv``: a detection in its track."""

    path: str
    crop: str
    deployment: str
    night: str
    timestamp: str
    time: datetime
    track: str
    prediction: str  # the track's answer; empty when no classifier answered
    rank: str
    track_prob: float | None
    detection_prob: float | None  # this crop's prediction_prob, else its detection_score
    detection_class: str
    filter_class: str = ""  # what a moth filter called the crop (moths-infer --pipeline)
    answered: bool = True  # the classifier answered for this crop (a filter may stop it)
    uncounted: str = ""  # why the track is no individual (moths-track's track_uncounted)


def read_tracks(path: str | os.PathLike) -> list[TrackedDetection]:
    """The rows of a ``tracks.csv``, in file order.

    Raises:
        TracksError: the file cannot be read, lacks a column of :data:`REQUIRED_COLUMNS`,
            or has a row with an empty track, deployment or night, or a timestamp or
            probability that is no such thing.
    """
    path = Path(path)
    with csv_table(path, REQUIRED_COLUMNS, "a tracks.csv from moths-track", TracksError) as table:
        where = {c: table.header.index(c) for c in _USED if c in table.header}
        return [
            _row(path, line, {c: _text(cells, i) for c, i in where.items()})
            for line, cells in enumerate(table.rows, start=2)
        ]


def _text(cells: list[str], index: int) -> str:
    """A cell as written (spreadsheet quoting undone); empty when the row is short."""
    cell = cells[index].strip() if index < len(cells) else ""
    return from_spreadsheet_safe(cell) if cell.startswith("'") else cell


def _row(path: Path, line: int, row: dict[str, str]) -> TrackedDetection:
    def text(column: str) -> str:
        return row.get(column, "")

    where = f"{path}, line {line}"
    for column in ("track", "deployment", "night", "timestamp"):
        if not text(column):
            raise TracksError(f"{where}: empty {column}")
    try:
        time = datetime.fromisoformat(text("timestamp"))
    except ValueError:
        raise TracksError(f"{where}: timestamp {text('timestamp')!r} is not ISO 8601") from None
    detection_prob = _probability(text("prediction_prob"), where, "prediction_prob")
    if detection_prob is None:
        detection_prob = _probability(text("detection_score"), where, "detection_score")
    return TrackedDetection(
        path=text("path"),
        crop=text("crop"),
        deployment=text("deployment"),
        night=text("night"),
        timestamp=text("timestamp"),
        time=time,
        track=text("track"),
        prediction=text("track_prediction"),
        rank=text("track_prediction_rank"),
        track_prob=_probability(text("track_prediction_prob"), where, "track_prediction_prob"),
        detection_prob=detection_prob,
        detection_class=text("detection_class"),
        filter_class=text("filter_class"),
        answered=bool(text("prediction")),
        uncounted=text("track_uncounted"),
    )


def _probability(text: str, where: str, column: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise TracksError(f"{where}: {column} {text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise TracksError(f"{where}: {column} {value} is outside 0..1")
    return value
