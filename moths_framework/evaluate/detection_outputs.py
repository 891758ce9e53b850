"""Writing ``moths-evaluate``'s files for a detection folder: metrics.json, counts.csv,
report.html.

Recorded in the folder's ``.moths-output.json`` as the classifier's are (see
:mod:`.outputs`): a later evaluation overwrites them, a file of the same name
that ``moths-evaluate`` did not write stops it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from moths_framework.atomic_files import write_text_atomically
from moths_framework.csv_cells import spreadsheet_safe, spreadsheet_safe_row
from moths_framework.evaluate.detection_evaluation import DetectionEvaluation
from moths_framework.evaluate.outputs import METRICS_JSON, REPORT_HTML, WRITER
from moths_framework.output_folders import check_may_overwrite, record_written

__all__ = ["COUNTS_CSV", "counts_csv", "write_detection_evaluation"]

COUNTS_CSV = "counts.csv"


def write_detection_evaluation(
    evaluation: DetectionEvaluation, out_dir: str | Path, report: bool = True
) -> Path:
    """Write the metrics, the counts per frame and (optionally) the report.

    Returns:
        The path of ``report.html`` (or of ``metrics.json`` without a report).

    Raises:
        OutputFolderError: one of these files exists and moths-evaluate did not
            write it (checked before anything is written).
    """
    out = Path(out_dir)
    names = [METRICS_JSON, COUNTS_CSV, *([REPORT_HTML] if report else [])]
    check_may_overwrite(out, names, WRITER)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        metrics = json.dumps(evaluation.to_json(), indent=1, ensure_ascii=False)
        write_text_atomically(out / METRICS_JSON, metrics)
        written.append(METRICS_JSON)
        write_text_atomically(out / COUNTS_CSV, counts_csv(evaluation))
        written.append(COUNTS_CSV)
        if not report:
            return out / METRICS_JSON
        from moths_framework.evaluate.detection_report import render_detection_report

        write_text_atomically(out / REPORT_HTML, render_detection_report(evaluation, COUNTS_CSV))
        written.append(REPORT_HTML)
        return out / REPORT_HTML
    finally:
        record_written(out, written, WRITER)


def counts_csv(evaluation: DetectionEvaluation) -> str:
    """One row per frame, in the folder's order: ``frame, width, height, true, predicted,
    difference, hits, error``, then with two classes or more ``true <class>`` and
    ``predicted <class>`` per class. An unreadable frame has its error and empty counts."""
    classes = evaluation.folder.classes
    per_class = len(classes) > 1
    header = ["frame", "width", "height", "true", "predicted", "difference", "hits", "error"]
    if per_class:
        header += [f"{kind} {name}" for name in classes for kind in ("true", "predicted")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(spreadsheet_safe_row(header))
    for c in evaluation.counts:
        row: list[object] = [spreadsheet_safe(c.path), c.width, c.height]
        if c.error:
            row += ["", "", "", "", spreadsheet_safe(c.error)]
            row += [""] * (2 * len(classes) if per_class else 0)
        else:
            row += [c.true, c.predicted, c.difference, c.hits, ""]
            if per_class:
                pairs = zip(c.per_class_true, c.per_class_predicted, strict=True)
                row += [int(n) for pair in pairs for n in pair]
        writer.writerow(row)
    return buffer.getvalue()
