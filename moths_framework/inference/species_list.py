"""Regional species lists: restrict predictions to the species that occur somewhere.

A species list keeps, at the species rank, the listed species plus ``Other``
(a moth that is not on the list, or not one of the trained species, still
needs somewhere to go). At every other rank it keeps the classes that are an
ancestor of a kept species, plus ``Other``. Each head keeps its own evidence (a
genus probability is still the genus head's, not a sum of species
probabilities). What happens to the probability of the removed classes is the
mask mode:

- ``"other"`` (default): it goes to ``Other``. A kept class's probability is
  the same with or without the list, so a moth that is not on the list (say,
  a vagrant look-alike) is not pushed onto a listed species past the threshold.
- ``"renormalize"``: the removed classes' logits are set to -inf before the
  softmax, so each head is renormalised over what is kept (the AMI platform's
  behaviour): the unlisted classes' share inflates the listed ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import numpy as np

from moths_framework.hierarchy import OTHER, LabelHierarchy
from moths_framework.inference.prediction import softmax

__all__ = [
    "DEFAULT_MASK_MODE",
    "MASK_MODES",
    "SpeciesListError",
    "allowed_classes",
    "check_mask_mode",
    "masked_probabilities",
    "read_species_list",
]

MASK_MODES = ("other", "renormalize")
DEFAULT_MASK_MODE = "other"


class SpeciesListError(ValueError):
    """A species list names species the model does not know, or cannot be read."""


def read_species_list(source: str | PathLike | Iterable[str]) -> list[str]:
    """The species names of a list: a text file (one per line) or an iterable of names.

    Blank lines and lines starting with ``#`` are skipped; names are stripped.

    Raises:
        SpeciesListError: the file cannot be read or lists no species.
    """
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except OSError as error:
            raise SpeciesListError(f"cannot read species list {path}: {error}") from error
        origin = str(path)
    else:
        lines, origin = list(source), "the species list"
    names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not names:
        raise SpeciesListError(f"{origin} lists no species")
    return list(dict.fromkeys(names))


def allowed_classes(hierarchy: LabelHierarchy, species: Iterable[str]) -> dict[str, np.ndarray]:
    """Per rank, a boolean mask over the classes that a species list keeps.

    Species the model bundled into ``Other`` (too few training images) are
    accepted: they are predicted as ``Other``, which always stays allowed.

    Raises:
        SpeciesListError: names that are not species of the model, each with the
            closest species names as suggestions.
    """
    known = hierarchy.classes(hierarchy.ranks[0])
    names = list(species)
    unknown = [n for n in names if n not in known and n not in hierarchy.bundled and n != OTHER]
    if unknown:
        raise SpeciesListError(
            f"{len(unknown)} name(s) in the species list are not species of this model: "
            + "; ".join(_with_suggestions(name, known) for name in unknown)
        )
    kept = {rank: {OTHER} for rank in hierarchy.ranks}
    for name in names:
        for rank, ancestor in hierarchy.ancestors(name).items():
            kept[rank].add(ancestor)
    return {
        rank: np.array([c in kept[rank] for c in hierarchy.classes(rank)], dtype=bool)
        for rank in hierarchy.ranks
    }


def check_mask_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MASK_MODES`.

    Raises:
        ValueError: any other value, naming the valid ones.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {', '.join(MASK_MODES)}, got {mode!r}")
    return mode


def masked_probabilities(
    logits: np.ndarray,
    keep: np.ndarray,
    other: int,
    mode: str = DEFAULT_MASK_MODE,
    temperature: float = 1.0,
) -> np.ndarray:
    """One head's probabilities ``[N, classes]`` under a species list's mask.

    Args:
        logits: the head's raw logits ``[N, classes]``.
        keep: the head's mask from :func:`allowed_classes` (``keep[other]`` is true).
        other: the index of ``Other`` among the head's classes.
        mode: ``"other"``: removed classes' probability is added to ``Other``,
            kept classes' probabilities are those without a list.
            ``"renormalize"``: softmax over the kept classes only.
        temperature: the head's softmax temperature.

    Removed classes get probability 0 in both modes; each row sums to 1.
    """
    if check_mask_mode(mode) == "renormalize":
        return softmax(np.where(keep, logits, -np.inf), temperature)
    probs = softmax(logits, temperature)
    removed = np.where(keep, 0.0, probs).sum(axis=1)
    probs = np.where(keep, probs, 0.0)
    probs[:, other] += removed
    return probs


def _with_suggestions(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"{name!r} (did you mean {', '.join(map(repr, close))}?)" if close else repr(name)
