"""``HierarchyTable``: species and their ancestors as a source reads them, before bundling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moths_framework.hierarchy.names import check_rank_name

__all__ = ["HierarchyTable"]


@dataclass(frozen=True)
class HierarchyTable:
    """Species and their ancestors as read from a source, before any bundling.

    Attributes:
        ranks: rank names in head order, ``species`` first.
        ancestors: species name -> names at ``ranks[1:]``; :data:`OTHER`
            where the species is not known at that rank.
        origin: where the table came from, for error messages.
    """

    ranks: tuple[str, ...]
    ancestors: Mapping[str, tuple[str, ...]]
    origin: str = "<table>"

    def __post_init__(self) -> None:
        for rank in self.ranks:  # any source plugin's table, not only the CSV's
            check_rank_name(rank, self.origin)
