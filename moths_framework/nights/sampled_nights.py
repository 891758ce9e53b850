"""The nights sampled: ``nights.csv``, one row per deployment and night with a frame.

``tracks.csv`` holds only detections, so a night on which the trap photographed the
sheet and nothing came (an absence, and worth publishing) is not in it. ``moths-track``
times every frame the detector searched, with or without boxes, and writes the
nights those frames fall in beside ``tracks.csv``:

``deployment``, ``night`` (``YYYY-MM-DD`` of its evening), ``frames`` (frames searched
and timed that night), ``first_frame``, ``last_frame`` (their earliest and latest local
times, ISO 8601, with the offset when the deployment's time zone is known).

Frames without a time are in no night (``untimed_frames.csv`` lists them). ``moths-dwc
--core event`` makes one sampling event of each row. No torch.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from moths_framework.atomic_files import write_csv_atomically
from moths_framework.csv_cells import from_spreadsheet_safe, spreadsheet_safe
from moths_framework.csv_table import csv_table

if TYPE_CHECKING:  # moths-dwc reads nights.csv on the base install (frame_times needs tqdm)
    from moths_framework.nights.frame_times import FrameTime

__all__ = [
    "NIGHTS_CSV",
    "NIGHT_COLUMNS",
    "NightsError",
    "SampledNight",
    "read_nights",
    "sampled_nights",
    "write_nights",
]

NIGHTS_CSV = "nights.csv"
NIGHT_COLUMNS = ("deployment", "night", "frames", "first_frame", "last_frame")


class NightsError(ValueError):
    """A ``nights.csv`` that cannot be read; the message is one line."""


@dataclass(frozen=True)
class SampledNight:
    """A night a deployment's camera photographed the sheet, moths or none."""

    deployment: str
    night: str
    frames: int
    first_frame: str  # local time, ISO 8601
    last_frame: str

    @property
    def hours(self) -> float:
        """Hours from the first frame to the last."""
        first = datetime.fromisoformat(self.first_frame)
        last = datetime.fromisoformat(self.last_frame)
        return (last - first).total_seconds() / 3600


def sampled_nights(times: Iterable[FrameTime]) -> list[SampledNight]:
    """The nights of ``times`` (timed frames), by deployment, then night."""
    by_night: dict[tuple[str, date], list[FrameTime]] = defaultdict(list)
    for frame in times:
        by_night[(frame.deployment.id, frame.night)].append(frame)
    nights = []
    for (deployment, night), frames in sorted(by_night.items()):
        first = min(frames, key=lambda f: f.time)
        last = max(frames, key=lambda f: f.time)
        nights.append(
            SampledNight(
                deployment, night.isoformat(), len(frames), first.iso_time(), last.iso_time()
            )
        )
    return nights


def write_nights(path: str | os.PathLike, nights: Sequence[SampledNight]) -> None:
    """Write ``nights.csv`` atomically."""
    rows = (
        [spreadsheet_safe(n.deployment), n.night, n.frames, n.first_frame, n.last_frame]
        for n in nights
    )
    write_csv_atomically(path, NIGHT_COLUMNS, rows)


def read_nights(path: str | os.PathLike) -> list[SampledNight]:
    """The rows of a ``nights.csv``, in file order.

    Raises:
        NightsError: the file cannot be read, lacks a column, repeats a night, or has a
            row whose night, frame count or times are no such thing.
    """
    path = Path(path)
    what = "a nights.csv, which moths-track writes beside tracks.csv"
    with csv_table(path, NIGHT_COLUMNS, what, NightsError) as table:
        nights = [_night(path, line, row) for line, row in enumerate(table.records(), start=2)]
    seen: set[tuple[str, str]] = set()
    for night in nights:
        key = (night.deployment, night.night)
        if key in seen:
            raise NightsError(
                f"{path}: night {night.night} of {night.deployment!r} is listed twice"
            )
        seen.add(key)
    return nights


def _night(path: Path, line: int, row: dict[str, str | None]) -> SampledNight:
    cells = {k: (v or "").strip() for k, v in row.items() if k}
    where = f"{path}, line {line}"
    deployment = from_spreadsheet_safe(cells["deployment"])
    if not deployment:
        raise NightsError(f"{where}: empty deployment")
    try:
        date.fromisoformat(cells["night"])
    except ValueError:
        raise NightsError(f"{where}: night {cells['night']!r} is not YYYY-MM-DD") from None
    try:
        frames = int(cells["frames"])
    except ValueError:
        raise NightsError(f"{where}: frames {cells['frames']!r} is not a whole number") from None
    if frames < 1:
        raise NightsError(f"{where}: frames {frames}: a night sampled has a frame")
    times = []
    for column in ("first_frame", "last_frame"):
        try:
            times.append(datetime.fromisoformat(cells[column]))
        except ValueError:
            raise NightsError(f"{where}: {column} {cells[column]!r} is not ISO 8601") from None
    first, last = times
    if (first.utcoffset() is None) != (last.utcoffset() is None) or last < first:
        raise NightsError(f"{where}: last_frame is before first_frame, or one has an offset "
                          "and the other none")  # fmt: skip
    return SampledNight(deployment, cells["night"], frames, cells["first_frame"],
                        cells["last_frame"])  # fmt: skip
