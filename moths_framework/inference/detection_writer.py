"""Writing a pipeline's results as ``detections.csv`` (or JSON Lines): one row per detection.

A frame with no detection still gets one row, its box cells empty, so a count
per frame never loses a frame; a frame that could not be read gets one row with
``error``. After the frame's columns come the moth filter's (``filter_class``,
``filter_score``: with a filter only), then the classifier's, exactly as
``moths-infer`` writes them for an image (:func:`~.writers.prediction_columns`,
without its ``path`` and ``error``); without a classifier there are none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from moths_framework.inference.pipeline import FrameDetection, FrameResult
from moths_framework.inference.writers import (
    RecordWriter,
    prediction_columns,
    prediction_json,
    prediction_record,
)

__all__ = [
    "FILTER_COLUMNS",
    "FRAME_COLUMNS",
    "DetectionWriter",
    "detection_columns",
    "detection_records",
]

# path: the frame; width, height: its size as shown (EXIF orientation applied);
# detection: 1, 2, ... in the frame, best score first; x1..y2: the box in the
# frame's pixels; crop: the crop's file (with --crops).
FRAME_COLUMNS = (
    "path", "width", "height", "detection",
    "x1", "y1", "x2", "y2", "detection_score", "detection_class", "crop",
)  # fmt: skip
# filter_class: what the moth filter called the crop; filter_score: its probability
# of the filter's positive class. A crop it did not let on has no classifier cells.
FILTER_COLUMNS = ("filter_class", "filter_score")
_BOX = ("x1", "y1", "x2", "y2")
_CSV_FORMATS = dict.fromkeys(_BOX, "{:.2f}")  # hundredths of a pixel are plenty


def detection_columns(
    ranks: Sequence[str] | None, novelty: bool = False, moth_filter: bool = False
) -> list[str]:
    """The frame's columns, the filter's (with ``moth_filter``), the classifier's (none
    when ``ranks`` is ``None``), ``error``."""
    classifier = prediction_columns(ranks, novelty)[1:-1] if ranks is not None else []
    filtered = FILTER_COLUMNS if moth_filter else ()
    return [*FRAME_COLUMNS, *filtered, *classifier, "error"]


def detection_records(
    frame: FrameResult,
    ranks: Sequence[str] | None,
    novelty: bool = False,
    crops: Sequence[str | None] = (),
    top_k: bool = False,
    moth_filter: bool = False,
) -> list[dict[str, Any]]:
    """A frame's records: one per detection, or the one row of a frame without any.

    Args:
        frame: the pipeline's result for the frame.
        ranks: the classifier's ranks; ``None`` without a classifier.
        novelty: the classifier has a novelty detector.
        crops: each detection's crop file, when written.
        top_k: add the JSON Lines ``top_k`` (rank -> ``[{"name", "prob"}, ...]``)
            and round probabilities to 6 decimals.
        moth_filter: the pipeline has a moth filter (its columns).
    """
    base = dict.fromkeys(detection_columns(ranks, novelty, moth_filter))
    base["path"] = frame.source
    if frame.size is not None:
        base["width"], base["height"] = frame.size
    if not frame.ok or not frame.detections:
        return [base | {"error": frame.error}]
    records = []
    for number, found in enumerate(frame.detections, start=1):
        crop = crops[number - 1] if crops else None
        record = base | _detection_cells(found, number, crop, top_k)
        if moth_filter:
            score = found.filter_score
            rounded = round(score, 6) if top_k and score is not None else score
            record |= {"filter_class": found.filter_class, "filter_score": rounded}
        if ranks is not None and found.prediction is not None:
            prediction = found.prediction
            if top_k:
                cells = prediction_json(prediction, ranks, novelty)
            else:
                cells = prediction_record(prediction, ranks, novelty)
            cells.pop("path")
            record |= cells
        records.append(record)
    return records


def _detection_cells(
    found: FrameDetection, number: int, crop: str | None, rounded: bool
) -> dict[str, Any]:
    box = [round(v, 2) for v in found.detection.box] if rounded else found.detection.box
    score = found.detection.score
    return {
        "detection": number,
        **dict(zip(_BOX, box, strict=True)),
        "detection_score": round(score, 6) if rounded else score,
        "detection_class": found.detection.label,
        "crop": crop,
    }


class DetectionWriter(RecordWriter):
    """Write frames' detections to ``path`` (``.jsonl``: JSON Lines with ``top_k``; else
    CSV), atomically (see :class:`~.writers.RecordWriter`).

    Args:
        path: the output file.
        ranks: the classifier's ranks; ``None`` without a classifier.
        novelty: the classifier has a novelty detector (``novelty_score``, ``novel``).
        moth_filter: the pipeline has a moth filter (``filter_class``, ``filter_score``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        ranks: Sequence[str] | None,
        novelty: bool = False,
        moth_filter: bool = False,
    ) -> None:
        super().__init__(path, detection_columns(ranks, novelty, moth_filter), _CSV_FORMATS)
        self.ranks = None if ranks is None else tuple(ranks)
        self.novelty = novelty
        self.moth_filter = moth_filter

    def write(self, frame: FrameResult, crops: Sequence[str | None] = ()) -> None:
        """Append a frame's rows; ``crops``: each detection's crop file, if written."""
        records = detection_records(
            frame, self.ranks, self.novelty, crops, self.jsonl, self.moth_filter
        )
        for record in records:
            self.write_record(record)
