"""Counting a night: individuals (tracks) per deployment, night and taxon, and
``occurrences.csv``.

A taxon is the track's answer (``track_prediction``): a track rolled up to a genus
counts under that genus, at that rank. A track whose crops the detector called a
non-moth class counts under that class, whatever the classifier said of it; so does a
track a moth filter stopped on most of its crops (``non-moth (<filter class>)`` unless
that class already says non-moth).
One row per (deployment, night, taxon): ``individuals`` (tracks), ``detections``
(rows), ``first_seen`` and ``last_seen`` (the earliest and latest of those rows'
timestamps), ``best_crop`` (the crop of the detection its classifier was surest of,
else that detection's frame) and ``mean_prob`` (the mean of the tracks'
``track_prediction_prob``). With a deployments table the rows also carry each
deployment's ``latitude``, ``longitude`` and ``trap_type``.

A track that moths-track marked as no moth of its own (``track_uncounted``: a box
over several moths, a second box on a moth) is not an individual: it is left out of
``occurrences.csv`` and listed by :func:`uncounted_tracks` (``uncounted_tracks.csv``,
:data:`UNCOUNTED_COLUMNS`), with the answer it would have counted under. No torch.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from moths_framework.atomic_files import write_csv_atomically
from moths_framework.csv_cells import from_spreadsheet_safe, spreadsheet_safe_row
from moths_framework.csv_table import csv_table
from moths_framework.nights.deployments import Deployments
from moths_framework.occurrences.taxa import is_non_moth
from moths_framework.occurrences.tracks_csv import TrackedDetection, TracksError

__all__ = [
    "DEPLOYMENT_COLUMNS",
    "OCCURRENCE_COLUMNS",
    "UNCOUNTED_COLUMNS",
    "Occurrence",
    "UncountedTrack",
    "count_occurrences",
    "read_occurrences",
    "uncounted_tracks",
    "write_occurrences",
    "write_uncounted",
]

OCCURRENCE_COLUMNS = (
    "deployment", "night", "taxon", "taxon_rank", "individuals", "detections",
    "first_seen", "last_seen", "best_crop", "mean_prob",
)  # fmt: skip
DEPLOYMENT_COLUMNS = ("latitude", "longitude", "trap_type")
UNCOUNTED_COLUMNS = (
    "deployment", "night", "track", "reason", "taxon", "taxon_rank", "detections",
    "first_seen", "last_seen", "best_crop",
)  # fmt: skip


@dataclass(frozen=True)
class Occurrence:
    """One row of ``occurrences.csv``: a taxon seen at a deployment in a night."""

    deployment: str
    night: str
    taxon: str
    taxon_rank: str
    individuals: int
    detections: int
    first_seen: str
    last_seen: str
    best_crop: str
    mean_prob: float | None
    latitude: float | None = None
    longitude: float | None = None
    trap_type: str = ""


def count_occurrences(
    rows: Iterable[TrackedDetection], deployments: Deployments | None = None
) -> list[Occurrence]:
    """The occurrences of ``rows``, by deployment and night (as sorted text), then most
    individuals first, then taxon. ``deployments``: where each deployment stood.

    Raises:
        TracksError: ``deployments`` lists none of a deployment in ``rows``.
    """
    groups: dict[tuple[str, str, str], list[list[TrackedDetection]]] = defaultdict(list)
    for members in _by_track(rows).values():
        if members[0].uncounted:
            continue
        taxon, _ = _answer(members)
        groups[(members[0].deployment, members[0].night, taxon)].append(members)
    found = [_occurrence(key, tracks, deployments) for key, tracks in groups.items()]
    return sorted(found, key=lambda o: (o.deployment, o.night, -o.individuals, o.taxon))


@dataclass(frozen=True)
class UncountedTrack:
    """A track not counted as an individual, and the taxon it would have counted as."""

    deployment: str
    night: str
    track: str
    reason: str
    taxon: str
    taxon_rank: str
    detections: int
    first_seen: str
    last_seen: str
    best_crop: str


def uncounted_tracks(rows: Iterable[TrackedDetection]) -> list[UncountedTrack]:
    """The tracks of ``rows`` that moths-track marked as no individual (``track_uncounted``),
    in order of first row."""
    found = []
    for track, members in _by_track(rows).items():
        if not members[0].uncounted:
            continue
        taxon, rank = _answer(members)
        best = _best(members)
        found.append(
            UncountedTrack(
                deployment=members[0].deployment,
                night=members[0].night,
                track=track,
                reason=members[0].uncounted,
                taxon=taxon,
                taxon_rank=rank,
                detections=len(members),
                first_seen=min(members, key=lambda r: r.time).timestamp,
                last_seen=max(members, key=lambda r: r.time).timestamp,
                best_crop=best.crop or best.path,
            )
        )
    return found


def write_uncounted(path: str | os.PathLike, tracks: Sequence[UncountedTrack]) -> None:
    """Write ``uncounted_tracks.csv`` (:data:`UNCOUNTED_COLUMNS`) atomically."""
    rows = (spreadsheet_safe_row(getattr(t, c) for c in UNCOUNTED_COLUMNS) for t in tracks)
    write_csv_atomically(path, UNCOUNTED_COLUMNS, rows)


def _by_track(rows: Iterable[TrackedDetection]) -> dict[str, list[TrackedDetection]]:
    by_track: dict[str, list[TrackedDetection]] = defaultdict(list)
    for row in rows:
        by_track[row.track].append(row)
    return by_track


def _best(rows: Sequence[TrackedDetection]) -> TrackedDetection:
    """The row its classifier (else its detector) was surest of."""
    return max(rows, key=lambda r: -1.0 if r.detection_prob is None else r.detection_prob)


def _answer(members: Sequence[TrackedDetection]) -> tuple[str, str]:
    """A track's taxon and rank: a non-moth when a moth filter stopped most of its crops,
    or the detector gave most of them a non-moth class; else its answer."""
    stopped = Counter(m.filter_class for m in members if m.filter_class and not m.answered)
    if 2 * sum(stopped.values()) > len(members):
        name = stopped.most_common(1)[0][0]
        return (name if is_non_moth(name) else f"non-moth ({name})"), ""
    classes = Counter(m.detection_class for m in members if m.detection_class)
    if classes:
        name, votes = classes.most_common(1)[0]
        if is_non_moth(name) and 2 * votes > len(members):
            return name, ""
    return members[0].prediction, members[0].rank


def _occurrence(
    key: tuple[str, str, str],
    tracks: list[list[TrackedDetection]],
    deployments: Deployments | None,
) -> Occurrence:
    deployment, night, taxon = key
    rows = [row for members in tracks for row in members]
    ranks = Counter(_answer(members)[1] for members in tracks)
    first = min(rows, key=lambda r: r.time)
    last = max(rows, key=lambda r: r.time)
    best = _best(rows)
    probs = [m[0].track_prob for m in tracks if m[0].track_prob is not None]
    place = _deployment(deployments, deployment)
    return Occurrence(
        deployment=deployment,
        night=night,
        taxon=taxon,
        taxon_rank=ranks.most_common(1)[0][0],
        individuals=len(tracks),
        detections=len(rows),
        first_seen=first.timestamp,
        last_seen=last.timestamp,
        best_crop=best.crop or best.path,
        mean_prob=sum(probs) / len(probs) if probs else None,
        **place,
    )


def _deployment(deployments: Deployments | None, name: str) -> dict:
    if deployments is None:
        return {}
    listed = {row.id: row for row in deployments.rows or []}
    if name not in listed:
        raise TracksError(
            f"deployment {name!r} of tracks.csv is not in the deployments table; add a row for it"
        )
    row = listed[name]
    return {"latitude": row.latitude, "longitude": row.longitude, "trap_type": row.trap_type}


def write_occurrences(
    path: str | os.PathLike, occurrences: Sequence[Occurrence], with_deployments: bool
) -> None:
    """Write ``occurrences.csv`` atomically; ``with_deployments`` adds
    :data:`DEPLOYMENT_COLUMNS`."""
    columns = [*OCCURRENCE_COLUMNS, *(DEPLOYMENT_COLUMNS if with_deployments else ())]
    rows = (
        [_number(cell) for cell in spreadsheet_safe_row(getattr(o, c) for c in columns)]
        for o in occurrences
    )
    write_csv_atomically(path, columns, rows)


def _number(cell: object) -> object:
    """A float in at most 6 significant digits; ``None`` as an empty cell."""
    if cell is None:
        return ""
    return f"{cell:.6g}" if isinstance(cell, float) else cell


def read_occurrences(path: str | os.PathLike) -> list[Occurrence]:
    """The rows of an ``occurrences.csv`` (as :func:`write_occurrences` wrote them).

    Raises:
        TracksError: the file cannot be read, lacks a column, or has a bad number.
    """
    path = Path(path)
    what = "an occurrences.csv from moths-count"
    with csv_table(path, OCCURRENCE_COLUMNS, what, TracksError) as table:
        return [_read_row(path, line, row) for line, row in enumerate(table.records(), start=2)]


def _read_row(path: Path, line: int, row: dict[str, str | None]) -> Occurrence:
    cells = {k: from_spreadsheet_safe((v or "").strip()) for k, v in row.items() if k}
    numbers: dict[str, object] = {}
    try:
        for column in ("individuals", "detections"):
            numbers[column] = int(cells[column])
        for column in ("mean_prob", "latitude", "longitude"):
            numbers[column] = float(cells[column]) if cells.get(column) else None
    except ValueError:
        raise TracksError(f"{path}, line {line}: {column} {cells[column]!r} is no number") from None
    text = {c: cells.get(c, "") for c in OCCURRENCE_COLUMNS if c not in numbers}
    return Occurrence(**text, **numbers, trap_type=cells.get("trap_type", ""))
