"""Views of a confusion matrix: the most-confused classes, per-family blocks, the CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from moths_framework.csv_cells import spreadsheet_safe, spreadsheet_safe_row
from moths_framework.hierarchy import LabelHierarchy

__all__ = [
    "FamilyMatrix",
    "confusion_csv",
    "family_matrices",
    "family_rank",
    "most_confused_classes",
]


def most_confused_classes(confusion: np.ndarray, limit: int = 60) -> np.ndarray:
    """Indices of up to ``limit`` classes, those in the most errors first (true or predicted).

    When every class fits, all classes in their own order are returned.
    """
    if len(confusion) <= limit:
        return np.arange(len(confusion))
    off = confusion - np.diag(np.diag(confusion))
    errors = off.sum(axis=0) + off.sum(axis=1)
    support = confusion.sum(axis=1)
    ranked = np.lexsort((-support, -errors))[:limit]  # errors, then support, decide
    return np.sort(ranked)


@dataclass(frozen=True)
class FamilyMatrix:
    """The species matrix within one family, as the seed drew it.

    Rows are the family's species with images; columns the family's species
    plus a last column for answers outside the family.
    """

    family: str
    matrix: np.ndarray
    rows: list[str]
    columns: list[str]
    errors: int


def family_rank(hierarchy: LabelHierarchy) -> str | None:
    """``family`` when the hierarchy has it, else the rank just above species; ``None``
    for a one-rank hierarchy (a moth / non-moth filter's: no rank groups its classes)."""
    if "family" in hierarchy.ranks:
        return "family"
    broader = hierarchy.ranks_by_specificity()[1:]
    return broader[0] if broader else None


def family_matrices(
    hierarchy: LabelHierarchy,
    species_confusion: np.ndarray,
    limit: int = 12,
    species_limit: int = 40,
) -> tuple[list[FamilyMatrix], int]:
    """Per family with at least two species with images, its species matrix.

    Returns:
        Up to ``limit`` matrices, the families with the most errors first, and
        how many families with two or more species were left out.
    """
    rank = family_rank(hierarchy)
    if rank is None:
        return [], 0
    species = hierarchy.classes("species")
    families: dict[str, list[int]] = {}
    for index, name in enumerate(species[1:], start=1):
        families.setdefault(hierarchy.ancestors(name)[rank], []).append(index)
    support = species_confusion.sum(axis=1)
    found = []
    for family, members in families.items():
        members = [m for m in members if support[m] > 0]
        if len(members) < 2:
            continue
        members_array = np.asarray(members)
        block = species_confusion[np.ix_(members_array, members_array)]
        keep = most_confused_classes(block, species_limit)
        members_array, block = members_array[keep], block[np.ix_(keep, keep)]
        outside = species_confusion[members_array].sum(axis=1) - block.sum(axis=1)
        matrix = np.column_stack([block, outside])
        errors = int(matrix.sum() - np.trace(block))
        names = [species[m] for m in members_array]
        found.append(FamilyMatrix(family, matrix, names, [*names, f"outside {family}"], errors))
    found.sort(key=lambda f: (-f.errors, f.family))
    return found[:limit], max(0, len(found) - limit)


def confusion_csv(confusion: np.ndarray, class_names: list[str]) -> str:
    """The full matrix as CSV: header ``true \\ predicted`` then class names; one row per class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(spreadsheet_safe_row(["true \\ predicted", *class_names]))
    for name, row in zip(class_names, confusion, strict=True):
        writer.writerow([spreadsheet_safe(name), *row.tolist()])
    return buffer.getvalue()
