"""The report's figures, drawn with matplotlib (Agg backend) and returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display, in servers and tests; before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from moths_framework.evaluate.reliability import CoverageCurve, Reliability  # noqa: E402

__all__ = ["confusion_png", "coverage_png", "precision_recall_png", "reliability_png"]

_DPI = 80
_ANNOTATE_UP_TO = 25  # classes; beyond that the numbers are unreadable


def confusion_png(
    matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], title: str
) -> bytes:
    """A heatmap of ``matrix`` (rows true, columns predicted), coloured by row fraction.

    Colour is the fraction of the row's images (recall view), so rare and common
    classes are comparable; the counts are written in the cells of small matrices.
    """
    rows, cols = matrix.shape
    small = max(rows, cols) <= 20
    font, cell = (9, 0.42) if small else (6, 0.16)
    # Margins in inches from the longest label: bbox_inches="tight" would draw twice.
    labels = max(map(len, [*row_labels, *col_labels, ""])) * font * 0.55 / 72 + 0.45
    left, bottom, top, right = labels, labels, 0.45, 1.3
    plot_w, plot_h = max(cols * cell, 1.5), max(rows * cell, 1.0)
    width, height = left + plot_w + right, bottom + plot_h + top
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, plot_w / width, plot_h / height))
    bar_box = ((left + plot_w + 0.15) / width, bottom / height, 0.15 / width, plot_h / height)
    bar = fig.add_axes(bar_box)
    totals = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(cols), col_labels, rotation=90, fontsize=font)
    ax.set_yticks(range(rows), row_labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if max(rows, cols) <= _ANNOTATE_UP_TO:
        for (r, c), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if fraction[r, c] > 0.6 else "black"
                ax.text(c, r, str(count), ha="center", va="center", fontsize=font, color=colour)
    fig.colorbar(image, cax=bar, label="fraction of the true class")
    return _png(fig)


def reliability_png(diagrams: Mapping[str, Reliability]) -> bytes:
    """One reliability diagram per rank: accuracy against confidence, with the ECE."""
    fig, axes = plt.subplots(1, len(diagrams), figsize=(3.6 * len(diagrams), 3.8), squeeze=False)
    for ax, (rank, rel) in zip(axes[0], diagrams.items(), strict=True):
        centres = (rel.edges[:-1] + rel.edges[1:]) / 2
        width = rel.edges[1] - rel.edges[0]
        filled = rel.count > 0
        acc, conf = rel.accuracy[filled], rel.confidence[filled]
        ax.bar(centres[filled], acc, width=width, color="tab:blue", edgecolor="white")
        ax.bar(
            centres[filled],
            conf - acc,
            bottom=acc,
            width=width,
            color="none",
            edgecolor="tab:red",
            hatch="///",
            linewidth=0.8,
        )
        ax.plot([], [], "s", color="tab:blue", label="accuracy")
        ax.plot([], [], "s", color="none", markeredgecolor="tab:red", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)")
        ax.set_title(f"{rank}: ECE {rel.ece:.3f}")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    return _png(fig)


def coverage_png(curves: Mapping[str, CoverageCurve], thresholds: Mapping[str, float]) -> bytes:
    """Accuracy against coverage per rank as the threshold sweeps 0..1; dots at ``thresholds``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for rank, curve in curves.items():
        (line,) = left.plot(curve.coverage, curve.accuracy, label=rank)
        right.plot(curve.thresholds, curve.coverage, color=line.get_color(), label=rank)
        at = int(np.argmin(np.abs(curve.thresholds - thresholds[rank])))
        left.plot(curve.coverage[at], curve.accuracy[at], "o", color=line.get_color())
        right.plot(curve.thresholds[at], curve.coverage[at], "o", color=line.get_color())
    left.set(xlabel="coverage (fraction answered at this rank)", ylabel="accuracy of those")
    left.set(xlim=(0, 1.02), title="accuracy against coverage")
    right.set(xlabel="threshold on the top-1 probability", ylabel="coverage", ylim=(0, 1.02))
    right.set_title("coverage against threshold (dot: current threshold)")
    left.legend()
    left.grid(alpha=0.3)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def precision_recall_png(
    recall: np.ndarray, precision: np.ndarray, point: tuple[float, float], label: str
) -> bytes:
    """A precision-recall curve, with a dot at ``point`` (recall, precision) named ``label``."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, color="tab:blue", label="interpolated (COCO, 101 points)")
    if all(np.isfinite(point)):
        ax.plot(*point, "o", color="tab:red", label=label)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title("precision against recall, IoU 0.5")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    plt.close(fig)
    return buffer.getvalue()
