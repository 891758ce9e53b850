"""``report.html`` of a detection folder: one self-contained page, figures and frames inlined."""

from __future__ import annotations

from moths_framework.evaluate.detection_evaluation import (
    IOU_THRESHOLD,
    DetectionEvaluation,
    FrameCount,
)
from moths_framework.evaluate.figures import precision_recall_png
from moths_framework.evaluate.frame_drawings import frame_png
from moths_framework.evaluate.html_parts import escape, image, number, page, table

__all__ = ["EXAMPLE_FRAMES", "example_frames", "render_detection_report"]

EXAMPLE_FRAMES = 6
COUNT_TABLE_ROWS = 25
UNREADABLE_ROWS = 20


def render_detection_report(evaluation: DetectionEvaluation, counts_csv: str) -> str:
    """The whole report as an HTML string (``counts_csv``: the per-frame file it points to)."""
    folder = evaluation.folder
    threshold = folder.score_threshold
    parts = [
        f"<h1>Evaluation of {escape(str(folder.path))}</h1>",
        _overview(evaluation),
        "<h2>Summary</h2>",
        _summary(evaluation),
        "<h2>Precision and recall</h2>",
        "<p>Over every box the detector returned, highest score first; each is a hit when "
        f"it overlaps a free true box of its class with IoU at least {IOU_THRESHOLD:g}. "
        f"The dot: the boxes kept at the score threshold {threshold:g}.</p>",
        image(
            precision_recall_png(
                evaluation.coco.recall,
                evaluation.coco.precision50,
                (evaluation.recall, evaluation.precision),
                f"score ≥ {threshold:g}",
            ),
            "precision-recall curve",
        ),
        _per_class(evaluation),
        "<h2>Counts per frame</h2>",
        _counts(evaluation, counts_csv),
        "<h2>Example frames</h2>",
        _examples(evaluation),
    ]
    return page(f"moths-evaluate: {folder.path.name}", "\n".join(parts))


def example_frames(evaluation: DetectionEvaluation, k: int = EXAMPLE_FRAMES) -> list[int]:
    """Positions of up to ``k`` readable frames: largest count error first, then most
    missed or wrong boxes, then file order."""
    read = [i for i, c in enumerate(evaluation.counts) if not c.error]
    return sorted(
        read,
        key=lambda i: (-abs(evaluation.counts[i].difference), -_misses(evaluation.counts[i]), i),
    )[:k]


def _misses(count: FrameCount) -> int:
    return (count.true - count.hits) + (count.predicted - count.hits)


def _overview(evaluation: DetectionEvaluation) -> str:
    folder = evaluation.folder
    described = ", ".join(
        f"{escape(str(k))}: {escape(str(v))}"
        for k, v in folder.metadata.items()
        if k != "task" and isinstance(v, str | int | float)
    )
    text = (
        f"<p>{evaluation.frames} frames, {evaluation.errors} could not be read (left out of "
        f"every number below). {len(folder.classes)} "
        f"{'class' if len(folder.classes) == 1 else 'classes'}; score threshold "
        f"{folder.score_threshold:g}.{' ' + described + '.' if described else ''}</p>"
    )
    if evaluation.errors:
        failed = [c for c in evaluation.counts if c.error][:UNREADABLE_ROWS]
        rows = [[escape(c.path), escape(c.error)] for c in failed]
        title = f"Unreadable frames (first {UNREADABLE_ROWS})"
        text += table(["frame", "error"], rows, names=2, title=title)
    return text


def _summary(evaluation: DetectionEvaluation) -> str:
    coco = evaluation.coco
    rows = [
        ["mAP@0.5", number(coco.map50)],
        ["mAP@[.5:.95]", number(coco.map)],
        [
            f"precision at score ≥ {evaluation.folder.score_threshold:g}",
            number(evaluation.precision),
        ],
        ["recall there", number(evaluation.recall)],
        ["true boxes", evaluation.true_boxes],
        ["boxes kept", evaluation.kept_boxes],
        ["of them hits", evaluation.hits],
        ["count error per frame, mean absolute", number(evaluation.count_mae)],
        ["count error per frame, mean (predicted − true)", number(evaluation.count_bias)],
    ]
    return table(["", "value"], rows, names=1)


def _per_class(evaluation: DetectionEvaluation) -> str:
    rows = [
        [escape(c.name), c.true_boxes, c.kept_boxes, c.hits, number(c.precision)]
        + [number(c.recall), number(c.ap50), number(c.ap), number(c.count_mae)]
        for c in evaluation.classes
    ]
    header = ["class", "true boxes", "kept", "hits", "precision", "recall", "AP@0.5"]
    header += ["AP@[.5:.95]", "count MAE"]
    return table(header, rows, names=1, title="Per class")


def _counts(evaluation: DetectionEvaluation, counts_csv: str) -> str:
    read = [c for c in evaluation.counts if not c.error]
    worst = sorted(read, key=lambda c: -abs(c.difference))[:COUNT_TABLE_ROWS]
    rows = [[escape(c.path), c.true, c.predicted, f"{c.difference:+d}", c.hits] for c in worst]
    text = (
        f"<p>Boxes kept at the threshold against true boxes, per frame: a mean absolute "
        f"error of {number(evaluation.count_mae)} moths and a mean of "
        f"{number(evaluation.count_bias)} (negative: the detector under-counts). Every frame "
        f"is in {escape(counts_csv)}.</p>"
    )
    title = f"Largest count errors (of {len(read)} frames)"
    header = ["frame", "true", "predicted", "difference", "hits"]
    return text + table(header, rows, names=1, title=title)


def _examples(evaluation: DetectionEvaluation) -> str:
    folder = evaluation.folder
    threshold = folder.score_threshold
    chosen = example_frames(evaluation)
    if not chosen:
        return "<p>No frame could be read.</p>"
    parts = [
        f"<p>{len(chosen)} frames, largest count error first: true boxes and the boxes kept "
        f"at score ≥ {threshold:g}.</p>"
    ]
    for i in chosen:
        truth, predicted, count = folder.truth[i], folder.predicted[i], evaluation.counts[i]
        kept = predicted.boxes[predicted.scores >= threshold]
        png = frame_png(
            truth.path, (truth.width, truth.height), truth.boxes, kept, f"score >= {threshold:g}"
        )
        caption = (
            f"{truth.path}: {count.true} true, {count.predicted} predicted "
            f"({count.difference:+d}), {count.hits} hits"
        )
        parts.append(f"<h3>{escape(caption)}</h3>{image(png, caption)}")
    return "\n".join(parts)
