"""Writing ``moths-evaluate``'s files: metrics.json, confusion/<rank>.csv, report.html.

Each is recorded in the folder's ``.moths-output.json`` (see
:mod:`moths_framework.output_folders`): a later evaluation overwrites them, a
file of the same name that ``moths-evaluate`` did not write stops it, and
``moths-predict`` may replace a prediction folder holding them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from moths_framework.atomic_files import write_text_atomically
from moths_framework.evaluate.confusion import confusion_csv
from moths_framework.hierarchy import check_rank_name
from moths_framework.output_folders import check_may_overwrite, record_written

if TYPE_CHECKING:  # the evaluation imports scikit-learn; a detector's evaluation needs none
    from moths_framework.evaluate.evaluation import Evaluation

__all__ = ["METRICS_JSON", "REPORT_HTML", "write_evaluation"]

METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"
CONFUSION_DIR = "confusion"
WRITER = "moths-evaluate"  # the command these files are recorded as written by


def write_evaluation(evaluation: Evaluation, out_dir: str | Path, report: bool = True) -> Path:
    """Write the metrics, the full confusion matrices and (optionally) the report.

    Each file is written to a temporary name and renamed into place, so a
    reader never sees half a file.

    Returns:
        The path of ``report.html`` (or of ``metrics.json`` without a report).

    Raises:
        HierarchyError: a rank name is not a safe file name (the hierarchy refuses
            those already; checked again here, where the rank becomes a file name).
        OutputFolderError: one of these files exists and moths-evaluate did not
            write it (checked before anything is written).
    """
    out = Path(out_dir)
    for rank in evaluation.ranks:
        check_rank_name(rank, "confusion matrix file")
    confusion = {rank: f"{CONFUSION_DIR}/{rank}.csv" for rank in evaluation.ranks}
    check_may_overwrite(
        out, [METRICS_JSON, *confusion.values(), *([REPORT_HTML] if report else [])], WRITER
    )
    (out / CONFUSION_DIR).mkdir(parents=True, exist_ok=True)
    written = [CONFUSION_DIR]
    try:
        metrics = json.dumps(evaluation.to_json(), indent=1, ensure_ascii=False)
        write_text_atomically(out / METRICS_JSON, metrics)
        written.append(METRICS_JSON)
        for rank, result in evaluation.ranks.items():
            text = confusion_csv(result.confusion, result.class_names)
            write_text_atomically(out / confusion[rank], text)
            written.append(confusion[rank])
        if not report:
            return out / METRICS_JSON
        from moths_framework.evaluate.report import render_report  # matplotlib: only to draw

        write_text_atomically(out / REPORT_HTML, render_report(evaluation))
        written.append(REPORT_HTML)
        return out / REPORT_HTML
    finally:
        record_written(out, written, WRITER)  # what was written, even when a later file failed
