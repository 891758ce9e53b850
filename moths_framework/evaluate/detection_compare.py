"""Two detection folders on the same frames: mAP, precision, recall and counts, A against B.

Frames are matched by path; only frames both folders could read count, and
their true boxes must be the same in both (else the numbers would compare two
different answer keys). Each folder keeps its own score threshold: comparing
a detector with itself at two thresholds is comparing two folders. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moths_framework.evaluate.detection_evaluation import (
    DetectionEvaluation,
    evaluate_detection_folder,
)
from moths_framework.evaluate.detection_folder import DetectionFolder, DetectionFolderError

__all__ = ["DetectionComparison", "compare_detection_folders", "format_detection_comparison"]


@dataclass(frozen=True)
class DetectionComparison:
    """A and B evaluated on the frames both read (``shared`` frames by path, of which
    ``unreadable`` are left out); ``closer``/``further``: frames whose count B got
    nearer to / farther from the truth than A."""

    a: DetectionEvaluation
    b: DetectionEvaluation
    shared: int
    only_a: int
    only_b: int
    unreadable: int
    closer: int
    further: int


def compare_detection_folders(a: DetectionFolder, b: DetectionFolder) -> DetectionComparison:
    """Evaluate A and B on the frames both hold and read.

    Raises:
        DetectionFolderError: other classes, no shared frame, or a shared frame whose
            true boxes differ.
    """
    if a.classes != b.classes:
        raise DetectionFolderError(
            f"{a.path} and {b.path} have other classes ({', '.join(a.classes)} against "
            f"{', '.join(b.classes)}); compare detectors of the same classes"
        )
    paths_b = {frame.path: i for i, frame in enumerate(b.truth)}
    shared = [(i, paths_b[f.path]) for i, f in enumerate(a.truth) if f.path in paths_b]
    if not shared:
        raise DetectionFolderError(
            f"{a.path} and {b.path} share no frames (matched by path); "
            "predict both on the same data"
        )
    errors_a, errors_b = a.errors, b.errors
    read = [(i, j) for i, j in shared if not errors_a[i] and not errors_b[j]]
    for i, j in read:
        if not _same_truth(a.truth[i], b.truth[j]):
            raise DetectionFolderError(
                f"{a.truth[i].path} has other true boxes in {a.path} than in {b.path}; "
                "compare folders predicted on the same annotations"
            )
    first = evaluate_detection_folder(_subset(a, [i for i, _ in read]))
    second = evaluate_detection_folder(_subset(b, [j for _, j in read]))
    before = np.array([abs(c.difference) for c in first.counts])
    after = np.array([abs(c.difference) for c in second.counts])
    return DetectionComparison(
        first,
        second,
        shared=len(shared),
        only_a=len(a) - len(shared),
        only_b=len(b) - len(shared),
        unreadable=len(shared) - len(read),
        closer=int(np.sum(after < before)),
        further=int(np.sum(after > before)),
    )


def format_detection_comparison(comparison: DetectionComparison) -> str:
    """The comparison as text: one line per metric, A, B and the change."""
    c = comparison
    a, b = c.a, c.b
    lines = [
        f"A: {a.folder.path} (score threshold {a.folder.score_threshold:g})",
        f"B: {b.folder.path} (score threshold {b.folder.score_threshold:g})",
        f"{c.shared} shared frames ({c.unreadable} unreadable in A or B, left out); "
        f"{c.only_a} only in A, {c.only_b} only in B",
        "",
        f"{'metric':<28}{'A':>8}{'B':>10}{'change':>10}",
    ]
    rows = [
        ("mAP@0.5", a.coco.map50, b.coco.map50),
        ("mAP@[.5:.95]", a.coco.map, b.coco.map),
        ("precision at the threshold", a.precision, b.precision),
        ("recall at the threshold", a.recall, b.recall),
        ("count MAE per frame", a.count_mae, b.count_mae),
        ("count mean error per frame", a.count_bias, b.count_bias),
    ]
    for name, before, after in rows:
        lines.append(f"{name:<28}{before:>8.4f}{after:>10.4f}{after - before:>+10.4f}")
    lines.append(f"frames whose count B got closer: {c.closer}, further: {c.further}")
    return "\n".join(lines)


def _same_truth(a, b) -> bool:
    return np.array_equal(a.labels, b.labels) and np.allclose(a.boxes, b.boxes)


def _subset(folder: DetectionFolder, rows: list[int]) -> DetectionFolder:
    return replace(
        folder,
        truth=tuple(folder.truth[i] for i in rows),
        predicted=tuple(folder.predicted[i] for i in rows),
    )
