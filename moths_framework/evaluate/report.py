"""``report.html``: one self-contained page (figures inlined as base64 PNG, no network)."""

from __future__ import annotations

from moths_framework.evaluate.confusion import family_matrices, family_rank, most_confused_classes
from moths_framework.evaluate.evaluation import Evaluation
from moths_framework.evaluate.figures import confusion_png, coverage_png, reliability_png
from moths_framework.evaluate.html_parts import escape as _e
from moths_framework.evaluate.html_parts import image as _img
from moths_framework.evaluate.html_parts import number as _f
from moths_framework.evaluate.html_parts import page
from moths_framework.evaluate.html_parts import percent as _pct
from moths_framework.evaluate.html_parts import table as _table
from moths_framework.evaluate.metrics import RankMetrics, confused_pairs

__all__ = ["render_report"]

HEATMAP_CLASSES = 60
CLASS_TABLE_ROWS = 300
PAIRS = 25


def render_report(evaluation: Evaluation) -> str:
    """The whole report as an HTML string."""
    folder = evaluation.folder
    parts = [
        f"<h1>Evaluation of {_e(str(folder.path))}</h1>",
        _overview(evaluation),
        "<h2>Summary per rank</h2>",
        _summary_table(evaluation),
        "<h2>Roll-up and coverage</h2>",
        _roll_up(evaluation),
        "<h2>Reliability</h2>",
        "<p>Top-1 probability against accuracy in 15 equal bins; ECE is the "
        "image-weighted mean gap. Bars under the diagonal: over-confident.</p>",
        _img(reliability_png(evaluation.reliability), "reliability diagrams"),
    ]
    for rank, metrics in evaluation.ranks.items():
        parts.append(_rank_section(rank, metrics))
    parts.append(_families(evaluation))
    parts.append(_other(evaluation))
    parts.append(_novelty(evaluation))
    return page(f"moths-evaluate: {folder.path.name}", "\n".join(parts))


def _overview(evaluation: Evaluation) -> str:
    folder = evaluation.folder
    text = (
        f"<p>{evaluation.images} images, {evaluation.errors} could not be read "
        f"(left out of every number below). Temperatures: {_mapping(folder.temperature)}; "
        f"roll-up thresholds: {_mapping(folder.thresholds)}.</p>"
    )
    if evaluation.errors:
        failed = [(p, e) for p, e in zip(folder.paths, folder.errors, strict=True) if e][:20]
        rows = [[_e(str(p)), _e(str(e))] for p, e in failed]
        text += _table(["image", "error"], rows, names=2, title="Unreadable images (first 20)")
    return text


def _summary_table(evaluation: Evaluation) -> str:
    header = ["rank", "classes", "images", "accuracy", "top-5", "precision", "recall", "F1"]
    header += ["balanced acc.", "ECE"]
    rows = []
    for rank, m in evaluation.ranks.items():
        rows.append(
            [_e(rank), len(m.class_names), m.support]
            + [_f(v) for v in (m.accuracy, m.top5_accuracy, m.precision_macro, m.recall_macro)]
            + [_f(m.f1_macro), _f(m.balanced_accuracy), _f(evaluation.reliability[rank].ece)]
        )
    note = '<p class="note">precision, recall, F1: macro averages over the classes present.</p>'
    return _table(header, rows) + note


def _roll_up(evaluation: Evaluation) -> str:
    evaluated = max(evaluation.images - evaluation.errors, 1)
    rows = [
        [_e(r.rank), _f(r.threshold), r.answered, _pct(r.answered / evaluated)]
        + [_f(r.correct / r.answered) if r.answered else "–"]
        for r in evaluation.roll_up
    ]
    method = evaluation.folder.rollup
    considered = (
        "top-1 probability"
        if method is None
        else f"class on the hierarchy-consistent path (calibrated roll-up {_e(method)})"
    )
    text = (
        "<p>Where the answer lands with the current thresholds: the first rank, from "
        f"most to least specific, whose {considered} reaches its threshold "
        f"({evaluation.unconfident} images reach none and are answered, unconfident, "
        "at the last rank).</p>"
    )
    text += _table(["answered at", "threshold", "images", "share", "accuracy there"], rows)
    text += (
        "<p>Sweeping one rank's threshold from 0 to 1: the fraction of images whose "
        "top-1 probability at that rank reaches it, and how accurate those answers are.</p>"
    )
    return text + _img(coverage_png(evaluation.coverage, evaluation.folder.thresholds), "coverage")


def _rank_section(rank: str, metrics: RankMetrics) -> str:
    parts = [f"<h2>Rank: {_e(rank)}</h2>"]
    shown = most_confused_classes(metrics.confusion, HEATMAP_CLASSES)
    names = [metrics.class_names[i] for i in shown]
    title = f"{rank}: confusion"
    if len(shown) < len(metrics.class_names):
        title += f" of the {len(shown)} most-confused of {len(metrics.class_names)} classes"
        parts.append(
            f'<p class="note">Shown: the {len(shown)} most-confused of '
            f"{len(metrics.class_names)} classes (most errors, as truth or as answer). "
            f"The full matrix is in confusion/{_e(rank)}.csv.</p>"
        )
    sub = metrics.confusion[shown][:, shown]
    parts.append(_img(confusion_png(sub, names, names, title), title))
    pairs = confused_pairs(metrics.confusion, metrics.class_names, PAIRS)
    parts.append(
        _table(
            ["true", "predicted as", "images"],
            [[_e(t), _e(p), n] for t, p, n in pairs],
            names=2,
            title=f"Most-confused pairs ({len(pairs)})",
        )
    )
    worst = sorted(metrics.classes, key=lambda c: (c.f1, -c.support, c.name))
    rows = [
        [_e(c.name), c.support, c.predicted, _f(c.precision), _f(c.recall), _f(c.f1)]
        + [_e(f"{c.confused_with} ({c.confused_count})") if c.confused_with else "–"]
        for c in worst[:CLASS_TABLE_ROWS]
    ]
    cut = f", worst {CLASS_TABLE_ROWS} shown" if len(worst) > CLASS_TABLE_ROWS else ""
    header = ["class", "images", "predicted", "precision", "recall", "F1", "most common mistake"]
    title = f"Per class, worst F1 first ({len(worst)} classes{cut})"
    parts.append(_table(header, rows, names=1, title=title, last_is_name=True))
    return "\n".join(parts)


def _families(evaluation: Evaluation) -> str:
    hierarchy = evaluation.folder.hierarchy
    rank = family_rank(hierarchy)
    if rank is None:  # one rank: no families to look inside
        return ""
    species = evaluation.ranks[hierarchy.ranks[0]]
    matrices, left_out = family_matrices(hierarchy, species.confusion)
    parts = [f"<h2>Species within each {_e(rank)}</h2>"]
    if not matrices:
        return parts[0] + f"<p>No {_e(rank)} has two or more species with images.</p>"
    parts.append(
        f"<p>For the images of each {_e(rank)}: which of its species they were "
        f"called, or a species outside the {_e(rank)}. Most errors first.</p>"
    )
    if left_out:
        parts.append(f'<p class="note">{left_out} more with fewer errors are left out.</p>')
    for fam in matrices:
        title = f"{fam.family} ({fam.errors} errors)"
        png = confusion_png(fam.matrix, fam.rows, fam.columns, title)
        parts.append(f"<details><summary>{_e(title)}</summary>{_img(png, title)}</details>")
    return "\n".join(parts)


def _other(evaluation: Evaluation) -> str:
    other = evaluation.other
    parts = ["<h2>Species the model calls Other</h2>"]
    if not other.images:
        parts.append("<p>No images of species outside the model's classes.</p>")
    else:
        parts.append(
            f"<p>{other.images} images of {len(other.per_species)} species the model has no "
            f"class for (bundled for too few images, or missing from the hierarchy). The "
            f"species head called {other.called_other} of them Other "
            f"({_pct(other.called_other / other.images)}).</p>"
        )
        rolled = [[_e(name), n] for name, n in list(other.rolled_up.items())[:15]]
        parts.append(_table(["rolled-up answer", "images"], rolled, names=1))
        rows = [
            [_e(s.species), s.images, s.called_other, _e(f"{s.commonest_prediction}")]
            + [s.commonest_count, _e(_top_items(s.rolled_up, 3))]
            for s in other.per_species[:100]
        ]
        header = ["species (data)", "images", "called Other", "commonest species answer"]
        header += ["times", "rolled-up answers"]
        parts.append(_table(header, rows, names=1, title="Per species", last_is_name=True))
    parts.append(
        f"<p>Images of trained species that the species head called Other: "
        f"{other.known_called_other}.</p>"
    )
    return "\n".join(parts)


def _novelty(evaluation: Evaluation) -> str:
    novelty = evaluation.novelty
    parts = ["<h2>Species the model never saw (novelty)</h2>"]
    if novelty is None:
        parts.append(
            "<p>No novelty scores: the model has no novelty detector "
            "(moths-calibrate fits one).</p>"
        )
        return "\n".join(parts)
    threshold = "unknown" if novelty.threshold is None else f"{novelty.threshold:.4g}"
    auroc = "not measured" if novelty.auroc is None else f"{novelty.auroc:.3f}"
    parts.append(f"<p>{_e(novelty.note)}.</p>")
    rows = [
        ["AUROC (never seen vs trained species)", auroc],
        ["novelty threshold", threshold],
        ["images of trained species (classes or bundled)", novelty.seen],
        ["images of species never seen", novelty.unseen],
        ["trained-species images flagged novel", _share(novelty.seen_flagged)],
        ["never-seen images flagged novel", _share(novelty.unseen_flagged)],
    ]
    parts.append(_table(["", "value"], rows, names=1))
    if novelty.unseen_species:
        names = ", ".join(_e(name) for name in novelty.unseen_species[:50])
        parts.append(f"<p class=note>Species never seen: {names}.</p>")
    return "\n".join(parts)


def _share(value: float | None) -> str:
    return "–" if value is None else _pct(value)


def _top_items(counts: dict[str, int], k: int) -> str:
    return ", ".join(f"{name} ({n})" for name, n in list(counts.items())[:k])


def _mapping(values: dict[str, float]) -> str:
    return ", ".join(f"{_e(k)} {v:g}" for k, v in values.items())
