"""Regional species lists: restrict predictions to the species that occur somewhere.

A species list keeps, at the species rank, the listed species plus ``Other``
(a moth that is not on the list, or not one of the trained species, still
needs somewhere to go). At every other rank it keeps the classes that are an
ancestor of a kept species, plus ``Other``. Each head's logits of the removed
classes are set to -inf before the softmax, so every head's probabilities are
renormalised over what is kept, and each head keeps its own evidence (a genus
probability is still the genus head's, not a sum of species probabilities).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import numpy as np

from moths_framework.hierarchy import OTHER, LabelHierarchy

__all__ = ["SpeciesListError", "allowed_classes", "read_species_list"]


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


def _with_suggestions(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"{name!r} (did you mean {', '.join(map(repr, close))}?)" if close else repr(name)
