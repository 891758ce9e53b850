"""Tracks against the truth: MOTA and IDF1 (``motmetrics``), and counts per species per night.

The truth is a CSV with one row per true moth per frame: ``path`` (as in
``detections.csv``), ``identity`` (the same for one moth all night), ``species``
and its box ``x1, y1, x2, y2``. Per night, motmetrics matches each frame's tracked
boxes to its true ones (IoU at least 0.5) and scores the identities over time:
MOTA (1 - (misses + false boxes + identity switches) / true boxes) and IDF1 (the F1
of boxes given the right identity under the best one-to-one pairing of tracks and
moths). The count of a species in a night is its number of tracks
(``track_prediction``) that count as individuals (``track_uncounted`` empty, as
``moths-count`` counts them); counting detections instead (rows per ``prediction``)
counts a moth once per frame. The count error is the sum over (night, species) of
the absolute difference from the true number of moths, over the true total. MOTA and
IDF1 score every tracked box, counted or not. No torch.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from moths_framework.csv_cells import from_spreadsheet_safe
from moths_framework.csv_table import csv_table
from moths_framework.evaluate.box_matching import box_iou

__all__ = ["CountRow", "TrackEvaluation", "evaluate_tracks", "read_truth"]

TRUTH_COLUMNS = ("path", "identity", "species", "x1", "y1", "x2", "y2")
MIN_IOU = 0.5


@dataclass(frozen=True)
class TruthBox:
    path: str
    identity: str
    species: str
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class CountRow:
    """One (night, taxon): true moths, counted tracks and detections answering that taxon."""

    night: str
    taxon: str
    true: int
    tracks: int
    detections: int


@dataclass
class TrackEvaluation:
    """The scores of a ``tracks.csv`` against the truth (all nights, and per night)."""

    mota: float
    idf1: float
    switches: int
    misses: int
    false_boxes: int
    true_boxes: int
    per_night: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: list[CountRow] = field(default_factory=list)

    @property
    def count_error(self) -> float:
        """Tracks: sum of |tracks - true| over (night, taxon), over the true total."""
        return _error(self.counts, "tracks")

    @property
    def detection_count_error(self) -> float:
        """The same for counting detections."""
        return _error(self.counts, "detections")

    @property
    def individuals_error(self) -> float:
        """Tracks against moths whatever their species: sum over nights of |tracks - moths|,
        over the moths (what linking alone gets wrong, the classifier aside)."""
        nights: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for row in self.counts:
            nights[row.night][0] += row.tracks
            nights[row.night][1] += row.true
        total = sum(true for _, true in nights.values())
        wrong = sum(abs(found - true) for found, true in nights.values())
        return wrong / total if total else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "mota": self.mota, "idf1": self.idf1, "id_switches": self.switches,
            "misses": self.misses, "false_boxes": self.false_boxes,
            "true_boxes": self.true_boxes, "count_error": self.count_error,
            "detection_count_error": self.detection_count_error,
            "individuals_error": self.individuals_error,
        }  # fmt: skip


def read_truth(path: str | os.PathLike) -> list[TruthBox]:
    """Read a truth CSV; ValueError (one line) when it cannot be used."""
    with csv_table(path, TRUTH_COLUMNS, "a truth CSV of true boxes") as table:
        return [
            TruthBox(
                _same(from_spreadsheet_safe(row["path"])),
                row["identity"],
                from_spreadsheet_safe(row["species"]),
                tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2")),
            )  # fmt: skip
            for row in table.records()
        ]


def evaluate_tracks(
    tracks: list[Mapping[str, str]],
    truth: list[TruthBox],
    frame_times: Mapping[str, tuple[str, str]],
) -> TrackEvaluation:
    """Score tracked rows (``tracks.csv``'s records) against ``truth``.

    Args:
        tracks: the rows of tracks.csv as dicts.
        truth: the true boxes.
        frame_times: frame path -> (``<deployment>/<night>``, ISO local time) for every
            timed frame (true boxes of frames missing here are left out: they were not
            tracked); frames are scored in time order.
    """
    import motmetrics as mm  # the track extra

    frames: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)  # night -> path -> ...
    frame_times = {_same(path): value for path, value in frame_times.items()}
    night_of = {path: night for path, (night, _) in frame_times.items()}
    for box in truth:
        night = night_of.get(box.path)
        if night is not None:
            frames[night].setdefault(box.path, ([], []))[0].append(box)
    for row in tracks:
        night = f"{row['deployment']}/{row['night']}"
        frames[night].setdefault(_same(from_spreadsheet_safe(row["path"])), ([], []))[1].append(row)
    accumulators, names, ids = [], [], {}
    for night in sorted(frames):
        accumulator = mm.MOTAccumulator(auto_id=True)
        for path in sorted(frames[night], key=lambda p: (frame_times.get(p, ("", ""))[1], p)):
            true, found = frames[night][path]
            distances = _distances([t.box for t in true], [_box(r) for r in found])
            # motmetrics (with pandas 3) wants numbers for ids
            true_ids = [ids.setdefault(("true", t.identity), len(ids)) for t in true]
            found_ids = [ids.setdefault(("track", r["track"]), len(ids)) for r in found]
            accumulator.update(true_ids, found_ids, distances)
        accumulators.append(accumulator)
        names.append(night)
    metrics = ["mota", "idf1", "num_switches", "num_misses", "num_false_positives",
               "num_objects", "num_unique_objects"]  # fmt: skip
    table = mm.metrics.create().compute_many(
        accumulators, metrics=metrics, names=names, generate_overall=True
    )
    overall = table.loc["OVERALL"]
    per_night = {name: {m: float(table.loc[name][m]) for m in metrics} for name in names}
    return TrackEvaluation(
        mota=float(overall["mota"]),
        idf1=float(overall["idf1"]),
        switches=int(overall["num_switches"]),
        misses=int(overall["num_misses"]),
        false_boxes=int(overall["num_false_positives"]),
        true_boxes=int(overall["num_objects"]),
        per_night=per_night,
        counts=_counts(tracks, truth, frame_times),
    )


def _counts(tracks, truth, frame_times) -> list[CountRow]:
    night_of = {_same(path): night for path, (night, _) in frame_times.items()}
    true: dict[tuple[str, str], set[str]] = defaultdict(set)
    for box in truth:
        night = night_of.get(box.path)
        if night is not None:
            true[(night, box.species)].add(box.identity)
    track_sets: dict[tuple[str, str], set[str]] = defaultdict(set)
    detections: Counter = Counter()
    for row in tracks:
        night = f"{row['deployment']}/{row['night']}"
        if not row.get("track_uncounted"):
            track_sets[(night, from_spreadsheet_safe(row["track_prediction"]))].add(row["track"])
        detections[(night, from_spreadsheet_safe(row.get("prediction", "")))] += 1
    keys = sorted(set(true) | set(track_sets) | set(detections))
    return [
        CountRow(night, taxon, len(true.get((night, taxon), ())),
                 len(track_sets.get((night, taxon), ())), detections.get((night, taxon), 0))
        for night, taxon in keys
    ]  # fmt: skip


def _error(counts: list[CountRow], what: str) -> float:
    total = sum(row.true for row in counts)
    wrong = sum(abs(getattr(row, what) - row.true) for row in counts)
    return wrong / total if total else float("nan")


def _box(row: Mapping[str, str]) -> tuple[float, float, float, float]:
    return tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))


def _distances(true: list, found: list) -> np.ndarray:
    """1 - IoU, NaN below :data:`MIN_IOU` (motmetrics' own ``iou_matrix`` needs numpy < 2)."""
    if not true or not found:
        return np.zeros((len(true), len(found)))
    iou = box_iou(np.asarray(true, dtype=np.float64), np.asarray(found, dtype=np.float64))
    return np.where(iou >= MIN_IOU, 1 - iou, np.nan)


def _same(path: str) -> str:
    """One spelling per file: absolute and normalised (relative paths: from here)."""
    return os.path.normpath(os.path.abspath(path))
