"""``report.html`` of ``moths-track --truth``: tracking scores and counts per species per night."""

from __future__ import annotations

from moths_framework.evaluate.html_parts import escape, number, page, percent, table
from moths_framework.evaluate.track_evaluation import MIN_IOU, TrackEvaluation

__all__ = ["render_track_report"]


def render_track_report(evaluation: TrackEvaluation, tracks_csv: str) -> str:
    """The whole report as an HTML string (``tracks_csv``: the file it scores)."""
    summary = [
        ("MOTA", number(evaluation.mota)),
        ("IDF1", number(evaluation.idf1)),
        ("identity switches", str(evaluation.switches)),
        ("missed true boxes", f"{evaluation.misses} of {evaluation.true_boxes}"),
        ("false boxes", str(evaluation.false_boxes)),
        ("count error, tracks", percent(evaluation.count_error)),
        ("count error, detections", percent(evaluation.detection_count_error)),
        ("individuals error (species aside)", percent(evaluation.individuals_error)),
    ]
    nights = [
        (escape(name), number(m["mota"]), number(m["idf1"]), int(m["num_switches"]),
         int(m["num_unique_objects"]))
        for name, m in evaluation.per_night.items()
    ]  # fmt: skip
    counts = [
        (escape(row.night), escape(row.taxon), row.true, row.tracks, row.detections)
        for row in evaluation.counts
    ]
    parts = [
        f"<h1>Tracks of {escape(tracks_csv)} against the truth</h1>",
        f"<p class=note>A tracked box matches a true one when their IoU is at least "
        f"{MIN_IOU:g}. MOTA: 1 − (misses + false boxes + identity switches) / true boxes. "
        "IDF1: the F1 of boxes carrying the right identity under the best one-to-one "
        "pairing of tracks and moths. Count error: the sum over (night, taxon) of |count − "
        "true moths|, over the true total; a taxon's count is its number of tracks "
        "(track_prediction) counted as individuals (track_uncounted empty), or, for "
        "detections, its number of rows (prediction). MOTA and IDF1 score every track. "
        "Individuals error: the same with every taxon of a night together (tracks against "
        "moths, the classifier aside).</p>",
        "<h2>Summary</h2>",
        table(["measure", "value"], summary),
        "<h2>Per night</h2>",
        table(["night", "MOTA", "IDF1", "switches", "true moths"], nights),
        "<h2>Counts per species per night</h2>",
        table(["night", "taxon", "true moths", "tracks", "detections"], counts, names=2),
    ]
    return page(f"moths-track: {tracks_csv}", "\n".join(parts))
