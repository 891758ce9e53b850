"""Writing ``moths-evaluate``'s files: metrics.json, confusion/<rank>.csv, report.html."""

from __future__ import annotations

import json
from pathlib import Path

from moths_framework.atomic_files import write_text_atomically
from moths_framework.evaluate.confusion import confusion_csv
from moths_framework.evaluate.evaluation import Evaluation
from moths_framework.hierarchy import check_rank_name

__all__ = ["METRICS_JSON", "REPORT_HTML", "write_evaluation"]

METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"
CONFUSION_DIR = "confusion"


def write_evaluation(evaluation: Evaluation, out_dir: str | Path, report: bool = True) -> Path:
    """Write the metrics, the full confusion matrices and (optionally) the report.

    Each file is written to a temporary name and renamed into place, so a
    reader never sees half a file.

    Returns:
        The path of ``report.html`` (or of ``metrics.json`` without a report).

    Raises:
        HierarchyError: a rank name is not a safe file name (the hierarchy refuses
            those already; checked again here, where the rank becomes a file name).
    """
    out = Path(out_dir)
    for rank in evaluation.ranks:
        check_rank_name(rank, "confusion matrix file")
    (out / CONFUSION_DIR).mkdir(parents=True, exist_ok=True)
    metrics = json.dumps(evaluation.to_json(), indent=1, ensure_ascii=False)
    write_text_atomically(out / METRICS_JSON, metrics)
    for rank, result in evaluation.ranks.items():
        text = confusion_csv(result.confusion, result.class_names)
        write_text_atomically(out / CONFUSION_DIR / f"{rank}.csv", text)
    if not report:
        return out / METRICS_JSON
    from moths_framework.evaluate.report import render_report  # matplotlib: only when drawing

    write_text_atomically(out / REPORT_HTML, render_report(evaluation))
    return out / REPORT_HTML
