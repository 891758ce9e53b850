"""Deployments: which trap took a frame, where it stood, and its time zone.

``deployments.csv`` (docs/reference/tracks-csv.md) has one row per deployment:
``deployment`` (its id, required), ``latitude``, ``longitude`` (decimal degrees,
WGS84), ``trap_type``, and optionally ``timezone`` (an IANA name such as
``Europe/Amsterdam``) and ``folder`` (frames under it, relative to the CSV, belong to
the deployment). A row without ``folder`` claims the frames in any folder named as
its id. Without a ``deployments.csv`` a frame's deployment is its folder's name.
No torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from moths_framework.csv_cells import from_spreadsheet_safe
from moths_framework.csv_table import csv_table

__all__ = ["Deployment", "DeploymentError", "Deployments", "read_deployments"]

COLUMNS = ("deployment", "latitude", "longitude", "trap_type", "timezone", "folder")


class DeploymentError(ValueError):
    """A ``deployments.csv`` that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Deployment:
    """One deployment: a trap at a place for a season."""

    id: str
    latitude: float | None = None
    longitude: float | None = None
    trap_type: str = ""
    timezone: ZoneInfo | None = None
    folder: Path | None = None  # absolute


class Deployments:
    """Finds a frame's deployment: by ``deployments.csv`` when given, else by folder name.

    Args:
        rows: the deployments of a ``deployments.csv``; ``None``: none given.
    """

    def __init__(self, rows: list[Deployment] | None = None) -> None:
        self.rows = rows
        self._by_id = {row.id: row for row in rows or []}

    def of(self, frame: str | os.PathLike) -> Deployment | None:
        """The deployment of ``frame``; ``None`` when a ``deployments.csv`` claims it not."""
        path = Path(frame)
        if self.rows is None:
            return Deployment(path.parent.name or ".")
        absolute = path.resolve()
        best: Deployment | None = None
        for row in self.rows:  # the deepest folder that holds the frame wins
            if row.folder is not None and absolute.is_relative_to(row.folder):
                if best is None or len(row.folder.parts) > len(best.folder.parts):
                    best = row
        if best is not None:
            return best
        for folder in path.parent.parts[::-1]:  # else: the nearest folder named as an id
            row = self._by_id.get(folder)
            if row is not None and row.folder is None:
                return row
        return None

    def get(self, deployment: str) -> Deployment:
        """The deployment with id ``deployment`` (a bare one when none is listed)."""
        return self._by_id.get(deployment, Deployment(deployment))


def read_deployments(path: str | os.PathLike) -> Deployments:
    """Read a ``deployments.csv``.

    Raises:
        DeploymentError: the file cannot be read, lacks ``deployment``, repeats an id,
            or has a latitude, longitude or time zone that is no such thing.
    """
    path = Path(path)
    what = f"a deployments.csv, columns {', '.join(COLUMNS)}"
    with csv_table(path, ["deployment"], what, DeploymentError) as table:
        rows = [
            _deployment(path, number, {k: (v or "").strip() for k, v in row.items() if k})
            for number, row in enumerate(table.records(), start=2)
        ]
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise DeploymentError(f"{path}: deployment {row.id!r} is listed twice")
        seen.add(row.id)
    return Deployments(rows)


def _deployment(path: Path, line: int, row: dict[str, str]) -> Deployment:
    where = f"{path}, line {line}"
    name = from_spreadsheet_safe(row.get("deployment", ""))
    if not name:
        raise DeploymentError(f"{where}: empty deployment id")
    latitude = _degrees(row.get("latitude", ""), 90, f"{where}: latitude")
    longitude = _degrees(row.get("longitude", ""), 180, f"{where}: longitude")
    zone = None
    if row.get("timezone"):
        try:
            zone = ZoneInfo(row["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise DeploymentError(
                f"{where}: unknown time zone {row['timezone']!r} (an IANA name: Europe/Amsterdam)"
            ) from None
    folder = row.get("folder")
    return Deployment(
        name,
        latitude,
        longitude,
        from_spreadsheet_safe(row.get("trap_type", "")),
        zone,
        (path.parent / from_spreadsheet_safe(folder)).resolve() if folder else None,
    )


def _degrees(text: str, limit: float, what: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DeploymentError(f"{what} {text!r} is not a number") from None
    if not -limit <= value <= limit:
        raise DeploymentError(f"{what} {value} is outside -{limit}..{limit} degrees")
    return value
