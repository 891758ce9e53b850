"""``detections.csv`` as moths-track reads it: the rows as written, and what tracking needs.

Cells are kept exactly as written, so ``tracks.csv`` repeats every column of
``detections.csv`` unchanged; the path and the classifier's names are read back
through :func:`~moths_framework.csv_cells.from_spreadsheet_safe`. No torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moths_framework.csv_cells import from_spreadsheet_safe
from moths_framework.csv_table import csv_table
from moths_framework.nights.track_vote import DetectionAnswer

__all__ = ["REQUIRED_COLUMNS", "DetectionTable", "TrackInputError", "read_detections"]

REQUIRED_COLUMNS = ("path", "width", "height", "detection", "x1", "y1", "x2", "y2")
_ROLL_UP = ("prediction", "prediction_rank", "prediction_prob", "confident")


class TrackInputError(ValueError):
    """An input moths-track cannot use; the message is one line."""


@dataclass
class DetectionTable:
    """A ``detections.csv``.

    Attributes:
        path: the file.
        columns: its header.
        rows: its data rows, cells as written.
        ranks: the classifier's ranks (from the ``<rank>, <rank>_prob`` columns), in the
            file's order; empty without classifier columns.
        novelty: whether rows carry ``novel``.
    """

    path: Path
    columns: list[str]
    rows: list[list[str]]
    ranks: list[str]
    novelty: bool

    def cell(self, row: int, column: str) -> str:
        return self.rows[row][self.columns.index(column)]

    def column(self, name: str) -> list[str]:
        at = self.columns.index(name)
        return [row[at] for row in self.rows]

    def box_rows(self) -> list[int]:
        """Rows with a box: a detection of a frame that was read."""
        detection, error = self.column("detection"), self._optional("error")
        return [i for i in range(len(self.rows)) if detection[i] and not error[i]]

    def searched_frames(self) -> list[str]:
        """The frames that were read (with or without detections), in file order."""
        paths, error = self.paths(), self._optional("error")
        return list(dict.fromkeys(p for p, e in zip(paths, error, strict=True) if not e))

    def paths(self) -> list[str]:
        return [from_spreadsheet_safe(p) for p in self.column("path")]

    def boxes(self, rows: list[int]) -> np.ndarray:
        """``[len(rows), 4]`` (x1, y1, x2, y2)."""
        at = [self.columns.index(c) for c in ("x1", "y1", "x2", "y2")]
        try:
            return np.array([[float(self.rows[r][a]) for a in at] for r in rows], dtype=np.float64)
        except ValueError as error:
            raise TrackInputError(f"{self.path}: a box cell is not a number ({error})") from None

    def scores(self) -> np.ndarray:
        """Each row's ``detection_score`` (0 where there is none)."""
        try:
            return np.array([float(c) if c else 0.0 for c in self._optional("detection_score")])
        except ValueError as error:
            raise TrackInputError(f"{self.path}: a detection_score is no number: {error}") from None

    def answer(self, row: int) -> DetectionAnswer | None:
        """The classifier's answer of a row; ``None`` without one."""
        if not self.ranks or not self.cell(row, "prediction"):
            return None
        classes = {}
        for rank in self.ranks:
            name, prob = self.cell(row, rank), self.cell(row, f"{rank}_prob")
            classes[rank] = (from_spreadsheet_safe(name), float(prob) if prob else 0.0)
        novel = self.cell(row, "novel") == "true" if self.novelty else None
        return DetectionAnswer(classes, novel)

    def names_seen(self) -> dict[str, set[str]]:
        """rank -> the classes rows name at it."""
        return {rank: set(self.column(rank)) - {""} for rank in self.ranks}

    def _optional(self, name: str) -> list[str]:
        return self.column(name) if name in self.columns else [""] * len(self.rows)


def read_detections(path: str | os.PathLike) -> DetectionTable:
    """Read a ``detections.csv`` written by ``moths-infer --detector``.

    Raises:
        TrackInputError: the file cannot be read or lacks a column tracking needs.
    """
    path = Path(path)
    what = "a detections.csv from moths-infer --detector"
    with csv_table(path, REQUIRED_COLUMNS, what, TrackInputError) as table:
        columns = table.header
        rows = [row for row in table.rows if row]
    short = next((n for n, row in enumerate(rows, start=2) if len(row) != len(columns)), None)
    if short is not None:
        raise TrackInputError(f"{path}, line {short}: {len(columns)} columns expected")
    return DetectionTable(path, columns, rows, _ranks(columns), "novel" in columns)


def _ranks(columns: list[str]) -> list[str]:
    """The classifier's ranks: the ``<rank>, <rank>_prob`` pairs before ``prediction``."""
    if not all(c in columns for c in _ROLL_UP):
        return []
    end = columns.index("prediction")
    start = columns.index("crop") + 1 if "crop" in columns else columns.index("y2") + 1
    names = columns[start:end]
    return [c for c in names if f"{c}_prob" in names]
