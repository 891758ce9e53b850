"""``HierarchySource``, the plugin interface for label hierarchies, and the built-in one.

Entry-point group ``moths_framework.label_hierarchies``: a source reads species
and their ancestors from wherever they live and returns a :class:`HierarchyTable`.
The built-in ``csv`` is :class:`CsvHierarchy`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from moths_framework.hierarchy.csv_file import read_hierarchy_csv
from moths_framework.hierarchy.label import LabelHierarchy
from moths_framework.hierarchy.table import HierarchyTable

__all__ = ["CsvHierarchy", "HierarchySource"]


class HierarchySource(ABC):
    """Plugin interface for label hierarchies.

    An implementation reads species and their ancestors from wherever they
    live (a CSV file, a taxonomy service dump, ...) and returns a
    :class:`HierarchyTable`. Ranks must start with ``species``; every species
    has a name at every other rank, :data:`OTHER` where it is not known there.
    """

    @abstractmethod
    def read(self) -> HierarchyTable:
        """Return the full table. Raises :class:`HierarchyError` on bad input."""

    def build(
        self, species_counts: Mapping[str, int] | None = None, min_samples: int = 0
    ) -> LabelHierarchy:
        """Read the table and build the class indices (see :meth:`LabelHierarchy.from_table`)."""
        return LabelHierarchy.from_table(self.read(), species_counts, min_samples)


class CsvHierarchy(HierarchySource):
    """A hierarchy CSV file, in either of two forms.

    - The seed's: ``;``-separated, ``"``-quoted, header
      ``speciesName;nederNaam;group;family;genus``.
    - A plain comma CSV whose header names the ranks, species first
      (e.g. ``species,genus,family``).

    A placeholder ancestor (``xxx``, ``-``, ``unknown``, empty) means "not known
    at this rank": the species belongs to ``Other`` there. A name ``Other`` (any
    case) is an error. See :mod:`moths_framework.hierarchy.csv_file` for the details.

    Args:
        path: the CSV file.
        ranks: the rank columns to use, species first. Default: every column
            of the header except Dutch/common-name columns, and for the
            seed's form exactly ``species, group, family, genus``.
        placeholders: the names that mean "unknown at this rank", compared
            case-insensitively; replaces :data:`DEFAULT_PLACEHOLDERS`. An empty
            cell always means unknown.
    """

    def __init__(
        self,
        path: str | Path,
        ranks: Sequence[str] | None = None,
        placeholders: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.ranks = tuple(ranks) if ranks is not None else None
        self.placeholders = tuple(placeholders) if placeholders is not None else None

    def read(self) -> HierarchyTable:
        return read_hierarchy_csv(self.path, self.ranks, self.placeholders)
