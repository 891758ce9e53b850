"""Roll-up methods: per-rank probabilities, and an answer consistent with the hierarchy.

A calibrated model names one of :data:`ROLLUP_METHODS` (chosen by
``moths-calibrate`` on validation images):

- ``heads``: every rank's own head, as trained;
- ``species_sum``: a coarse rank's probability of a taxon is the sum of the
  species head's probabilities over the species in that taxon (the AMI
  platform's approach), so it can never be below a species inside it;
- ``fused``: the mean of the two.

The answer then follows one path down the hierarchy (:func:`consistent_path`):
the most probable class at the broadest rank, then the most probable class
at the next rank among those with a species under the classes chosen so far,
down to a species. The answer is the first class on that path, from species
upwards, whose probability reaches its rank's threshold, so the species,
genus, family and group it reports always belong together. A model without
calibration keeps the independent walk of :func:`.prediction.roll_up`.

No torch import: numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from moths_framework.hierarchy import LabelHierarchy

__all__ = [
    "ROLLUP_METHODS",
    "check_rollup_method",
    "consistent_path",
    "rank_probabilities",
    "species_ancestry",
]

ROLLUP_METHODS = ("heads", "species_sum", "fused")
_CHUNK = 1024  # images per step of the path search: bounds the [N, species] masks


def check_rollup_method(method: str) -> str:
    """``method`` if it is one of :data:`ROLLUP_METHODS`; else a ValueError naming them."""
    if method not in ROLLUP_METHODS:
        raise ValueError(f"unknown roll-up method {method!r}; choose one of {ROLLUP_METHODS}")
    return method


def species_ancestry(hierarchy: LabelHierarchy) -> dict[str, np.ndarray]:
    """Rank -> the class index at that rank of every species class (``Other`` -> 0)."""
    species = hierarchy.classes(hierarchy.ranks[0])
    rows = np.array([hierarchy.targets(name) for name in species], dtype=np.int64)
    return {rank: rows[:, i] for i, rank in enumerate(hierarchy.ranks)}


def rank_probabilities(
    probs: Mapping[str, np.ndarray],
    method: str,
    ancestry: Mapping[str, np.ndarray],
    species_rank: str,
) -> dict[str, np.ndarray]:
    """Per-rank probabilities ``[N, C]`` under a roll-up method (see the module doc)."""
    check_rollup_method(method)
    if method == "heads":
        return dict(probs)
    species = probs[species_rank]
    result = {species_rank: species}
    for rank, head in probs.items():
        if rank == species_rank:
            continue
        summed = np.zeros(head.shape, dtype=np.float64)
        for start in range(0, len(species), _CHUNK):
            rows = slice(start, start + _CHUNK)
            # sum the species columns into their taxon's column, for each image
            np.add.at(summed[rows].T, ancestry[rank], species[rows].T)
        result[rank] = summed if method == "species_sum" else (summed + head) / 2.0
    return result


def consistent_path(
    probs: Mapping[str, np.ndarray],
    ancestry: Mapping[str, np.ndarray],
    order: Sequence[str],
    species_allowed: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The hierarchy-consistent path of every image: rank -> (class index, probability).

    Args:
        probs: rank -> probabilities ``[N, C]``.
        ancestry: :func:`species_ancestry` of the model's hierarchy.
        order: ranks from most to least specific (species first).
        species_allowed: optional bool ``[species]``: species a path may end in
            (a regional list); the classes above them follow.
    """
    n_species = len(ancestry[order[0]])
    allowed0 = np.ones(n_species, bool) if species_allowed is None else species_allowed
    n = len(probs[order[0]])
    path = {rank: (np.zeros(n, np.int64), np.zeros(n)) for rank in order}
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        alive = np.repeat(allowed0[None, :], rows.stop - rows.start, axis=0)
        for rank in reversed(order):  # broad to specific; species last
            owner = ancestry[rank]
            p = probs[rank][rows]
            reachable = np.zeros(p.shape, dtype=bool)
            image, species = np.nonzero(alive)
            reachable[image, owner[species]] = True
            choice = np.where(reachable, p, -np.inf).argmax(axis=1)
            alive &= owner[None, :] == choice[:, None]
            path[rank][0][rows] = choice
            path[rank][1][rows] = p[np.arange(len(choice)), choice]
    return path
