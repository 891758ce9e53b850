"""Two prediction folders on the same images: per-rank deltas and the classes that moved.

Rows are matched by image path; only images both folders could read count.
The two models may have different classes: per-class changes match classes
by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moths_framework.evaluate.folder_reader import PredictionFolder, PredictionFolderError
from moths_framework.evaluate.metrics import rank_metrics

__all__ = ["ClassChange", "Comparison", "RankDelta", "compare_folders", "format_comparison"]

_HEADLINE = ("accuracy", "top5_accuracy", "f1_macro", "balanced_accuracy")


@dataclass(frozen=True)
class RankDelta:
    """One rank in A and in B, on the shared images."""

    rank: str
    before: dict[str, float]
    after: dict[str, float]
    fixed: int
    broken: int


@dataclass(frozen=True)
class ClassChange:
    """A class's F1 in A and in B (matched by name)."""

    rank: str
    name: str
    support: int
    before: float
    after: float

    @property
    def delta(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare_folders`; ``changes`` holds every class with a new F1."""

    a: str
    b: str
    shared: int
    only_a: int
    only_b: int
    unreadable: int
    ranks: list[RankDelta]
    changes: list[ClassChange]


def compare_folders(a: PredictionFolder, b: PredictionFolder) -> Comparison:
    """Compare B against A on the images both hold.

    Raises:
        PredictionFolderError: the folders share no image path, or no rank.
    """
    common, index_a, index_b = np.intersect1d(a.paths, b.paths, return_indices=True)
    if len(common) == 0:
        raise PredictionFolderError(
            f"{a.path} and {b.path} share no images (rows are matched by path); "
            "predict both on the same data"
        )
    readable = a.ok[index_a] & b.ok[index_b]
    rows_a, rows_b = index_a[readable], index_b[readable]
    ranks = [rank for rank in a.hierarchy.ranks if rank in b.hierarchy.ranks]
    if not ranks:
        raise PredictionFolderError(f"{a.path} and {b.path} have no rank in common")
    deltas, changes = [], []
    for rank in ranks:
        names_a, names_b = a.hierarchy.classes(rank), b.hierarchy.classes(rank)
        out_a, out_b = a.rank_outputs(rank, rows_a), b.rank_outputs(rank, rows_b)
        metrics_a = rank_metrics(rank, names_a, out_a)
        metrics_b = rank_metrics(rank, names_b, out_b)
        deltas.append(
            RankDelta(
                rank,
                metrics_a.summary(),
                metrics_b.summary(),
                fixed=int(np.sum(~out_a.correct & out_b.correct)),
                broken=int(np.sum(out_a.correct & ~out_b.correct)),
            )
        )
        by_name = {c.name: c for c in metrics_b.classes}
        for before in metrics_a.classes:
            after = by_name.get(before.name)
            if after is not None and after.f1 != before.f1:
                changes.append(ClassChange(rank, before.name, before.support, before.f1, after.f1))
    return Comparison(
        a=str(a.path),
        b=str(b.path),
        shared=len(common),
        only_a=len(a) - len(common),
        only_b=len(b) - len(common),
        unreadable=int(np.sum(~readable)),
        ranks=deltas,
        changes=changes,
    )


def format_comparison(comparison: Comparison, limit: int = 10) -> str:
    """The comparison as text: one line per rank, then the classes that moved most."""
    c = comparison
    lines = [
        f"A: {c.a}",
        f"B: {c.b}",
        f"{c.shared} shared images ({c.unreadable} unreadable in A or B, left out); "
        f"{c.only_a} only in A, {c.only_b} only in B",
        "",
        f"{'rank':<10}{'metric':<20}{'A':>8}{'B':>10}{'change':>10}",
    ]
    for d in c.ranks:
        for i, metric in enumerate(_HEADLINE):
            before, after = d.before[metric], d.after[metric]
            rank = d.rank if i == 0 else ""
            lines.append(
                f"{rank:<10}{metric:<20}{before:>8.4f}{after:>10.4f}{after - before:>+10.4f}"
            )
        lines.append(f"{'':<10}images B fixed: {d.fixed}, broke: {d.broken}")
    for title, ordered in (
        ("better in B", sorted(c.changes, key=lambda x: (-x.delta, x.rank, x.name))),
        ("worse in B", sorted(c.changes, key=lambda x: (x.delta, x.rank, x.name))),
    ):
        moved = [x for x in ordered if (x.delta > 0) == (title == "better in B")][:limit]
        lines += ["", f"{title} (F1, A -> B):" if moved else f"{title}: none"]
        lines += [
            f"  {x.rank:<8} {x.name:<40} {x.before:.3f} -> {x.after:.3f} "
            f"({x.delta:+.3f}, {x.support} images)"
            for x in moved
        ]
    return "\n".join(lines)
