"""How well the novelty score flags images of species the model never saw.

A species was *seen* in training when it is one of the model's species classes
or was bundled into ``Other`` (the hierarchy records both); anything else in
the data is *unseen*, and the novelty detector should flag it. The measure is
the AUROC of ``novelty_score`` separating unseen from seen images (scikit-learn's
``roc_auc_score``); it needs images of both kinds. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moths_framework.hierarchy import LabelHierarchy, canonical_name

__all__ = ["NoveltySummary", "seen_in_training", "summarise_novelty"]


def seen_in_training(hierarchy: LabelHierarchy, species: np.ndarray) -> np.ndarray:
    """Whether each data species was seen in training (a species class, or bundled)."""
    seen = {*hierarchy.classes(hierarchy.ranks[0])[1:], *hierarchy.bundled}
    return np.array([canonical_name(str(s)) in seen for s in species], dtype=bool)


@dataclass(frozen=True)
class NoveltySummary:
    """Novelty scores against whether the species was seen in training.

    Attributes:
        threshold: scores above it are flagged ``novel`` (``None`` if unknown).
        scored: images with a novelty score.
        seen: of those, images of species seen in training.
        unseen: of those, images of species the model never saw.
        unseen_species: the unseen species, most images first.
        auroc: AUROC of the score for unseen against seen; ``None`` without both kinds.
        seen_flagged: fraction of seen-species images flagged novel.
        unseen_flagged: fraction of unseen-species images flagged novel.
        note: one sentence on what was (not) measured.
    """

    threshold: float | None
    scored: int
    seen: int
    unseen: int
    auroc: float | None
    seen_flagged: float | None
    unseen_flagged: float | None
    note: str
    unseen_species: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def summarise_novelty(
    hierarchy: LabelHierarchy,
    species: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
) -> NoveltySummary:
    """Summarise ``scores`` (NaN: not scored) of images of data ``species``."""
    scored = np.isfinite(scores)
    species, scores = np.asarray(species)[scored], np.asarray(scores, dtype=np.float64)[scored]
    unseen = ~seen_in_training(hierarchy, species)
    names, counts = np.unique(species[unseen], return_counts=True)
    by_count = [str(n) for _, n in sorted(zip(-counts, names, strict=True))]
    flagged = scores > threshold if threshold is not None else None
    auroc = None
    if not unseen.any():
        note = "no images of species the model never saw: novelty AUROC not measured"
    elif unseen.all():
        note = "only images of species the model never saw: novelty AUROC not measured"
    else:
        from sklearn.metrics import roc_auc_score

        auroc = float(roc_auc_score(unseen, scores))
        note = (
            f"AUROC of novelty_score for {int(unseen.sum())} images of "
            f"{len(by_count)} species the model never saw against {int((~unseen).sum())} "
            "images of species it was trained on"
        )
    return NoveltySummary(
        threshold=threshold,
        scored=len(scores),
        seen=int((~unseen).sum()),
        unseen=int(unseen.sum()),
        auroc=auroc,
        seen_flagged=_mean(flagged, ~unseen),
        unseen_flagged=_mean(flagged, unseen),
        note=note,
        unseen_species=by_count,
    )


def _mean(flagged: np.ndarray | None, rows: np.ndarray) -> float | None:
    if flagged is None or not rows.any():
        return None
    return float(flagged[rows].mean())
