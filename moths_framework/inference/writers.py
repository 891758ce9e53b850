"""Writing predictions as CSV or JSON Lines, atomically."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

from moths_framework.atomic_files import replaced_atomically
from moths_framework.csv_cells import spreadsheet_safe
from moths_framework.inference.prediction import Prediction

__all__ = [
    "PredictionWriter",
    "RecordWriter",
    "prediction_columns",
    "prediction_json",
    "prediction_record",
]


NOVELTY_COLUMNS = ("novelty_score", "novel")


def prediction_columns(ranks: Sequence[str], novelty: bool = False) -> list[str]:
    """The flat columns: path, then name and probability per rank, then the roll-up,
    then ``novelty_score, novel`` for a model with a novelty detector."""
    per_rank = [column for rank in ranks for column in (rank, f"{rank}_prob")]
    roll_up = ["prediction", "prediction_rank", "prediction_prob", "confident"]
    return ["path", *per_rank, *roll_up, *(NOVELTY_COLUMNS if novelty else ()), "error"]


def prediction_record(
    prediction: Prediction, ranks: Sequence[str], novelty: bool = False
) -> dict[str, Any]:
    """One prediction as a flat record (``None`` where an error left no value).

    The per-rank columns are the hierarchy-consistent path the answer came from
    when the model is calibrated, else each rank's top-1.
    """
    record: dict[str, Any] = dict.fromkeys(prediction_columns(ranks, novelty))
    record["path"] = prediction.source
    record["error"] = prediction.error
    if not prediction.ok:
        return record
    for rank in ranks:
        record[rank], record[f"{rank}_prob"] = prediction.answer_at(rank)
    record["prediction"] = prediction.prediction
    record["prediction_rank"] = prediction.prediction_rank
    record["prediction_prob"] = prediction.prediction_prob
    record["confident"] = prediction.confident
    if novelty:
        record["novelty_score"] = prediction.novelty_score
        record["novel"] = prediction.novel
    return record


def prediction_json(
    prediction: Prediction, ranks: Sequence[str], novelty: bool = False
) -> dict[str, Any]:
    """One prediction as a JSON Lines record: the flat record, probabilities rounded to
    6 decimals, plus ``top_k``: rank -> ``[{"name", "prob"}, ...]``."""
    record = _rounded(prediction_record(prediction, ranks, novelty))
    record["top_k"] = {
        rank: [{"name": name, "prob": round(prob, 6)} for name, prob in scores]
        for rank, scores in prediction.top_k.items()
    }
    return record


class RecordWriter:
    """Write flat records to ``path``: JSON Lines when it ends in ``.jsonl``, else CSV
    with ``columns``.

    Rows go to a temporary file next to ``path`` that replaces it only when the
    ``with`` block ends without an exception, so a crashed run never leaves a
    half-written output (nor destroys the previous one); its name is unique
    (:func:`~moths_framework.atomic_files.replaced_atomically`), so a temporary
    file a killed run left behind never stops a later one. CSV cells: empty for
    ``None``, ``true``/``false``, floats with 6 decimals unless ``csv_formats``
    gives a column its own format (``"{:.2f}"``), text spreadsheet-safe.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        columns: Sequence[str],
        csv_formats: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.csv_formats = dict(csv_formats or {})
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self._file: TextIO | None = None
        self._csv: csv.DictWriter | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            temporary = stack.enter_context(replaced_atomically(self.path))
            self._file = stack.enter_context(open(temporary, "w", encoding="utf-8", newline=""))
            self._stack = stack.pop_all()
        if not self.jsonl:
            self._csv = csv.DictWriter(self._file, self.columns)
            self._csv.writeheader()
        return self

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Append one record: a CSV row of :attr:`columns`, or one JSON line as given."""
        if self.jsonl:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        row = {}
        for key in self.columns:
            value, form = record.get(key), self.csv_formats.get(key)
            row[key] = form.format(value) if form and value is not None else _csv_value(value)
        self._csv.writerow(row)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Close the file; it replaces ``path`` only when the block raised nothing."""
        if kind is None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except BaseException as failure:
                self._stack.__exit__(type(failure), failure, failure.__traceback__)
                raise
        self._stack.__exit__(kind, error, trace)


class PredictionWriter(RecordWriter):
    """Write predictions to ``path``: JSON Lines when it ends in ``.jsonl``, else CSV
    (:func:`prediction_columns`), atomically (see :class:`RecordWriter`). JSON Lines
    records also carry ``top_k``: rank -> ``[{"name", "prob"}, ...]``. With
    ``novelty`` the rows carry ``novelty_score`` and ``novel``.
    """

    def __init__(
        self, path: str | os.PathLike, ranks: Sequence[str], novelty: bool = False
    ) -> None:
        super().__init__(path, prediction_columns(ranks, novelty))
        self.ranks = tuple(ranks)
        self.novelty = novelty

    def write(self, prediction: Prediction) -> None:
        """Append one prediction."""
        if self.jsonl:
            self.write_record(prediction_json(prediction, self.ranks, self.novelty))
        else:
            self.write_record(prediction_record(prediction, self.ranks, self.novelty))


def _rounded(record: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in record.items()}


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    return spreadsheet_safe(str(value))  # a name, path or error: no formula for spreadsheets
