"""``LabelHierarchy``: the class indices a model is trained on, one list per rank.

Index 0 at every rank is ``Other``: species with fewer than ``min_samples``
images and species missing from the table land there, and a species not known
at a rank belongs to ``Other`` at that rank only. The hierarchy travels inside
checkpoints and ONNX files as JSON (:meth:`LabelHierarchy.to_json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from moths_framework.hierarchy.csv_file import read_hierarchy_csv
from moths_framework.hierarchy.names import (
    OTHER,
    HierarchyError,
    canonical_name,
    check_rank_name,
)
from moths_framework.hierarchy.table import HierarchyTable

__all__ = ["LabelHierarchy"]

_JSON_FORMAT = 1


class LabelHierarchy:
    """Class indices per rank for the species a model is trained on.

    Use :meth:`from_csv` or :meth:`from_table`; the constructor takes the
    species that keep a class of their own (already filtered).

    Args:
        ranks: rank names in head order, species first.
        ancestors: kept species -> names at ``ranks[1:]`` (:data:`OTHER` where
            the species is not known at that rank).
        bundled: species that were folded into ``Other`` (kept for the record).

    Raises:
        HierarchyError: a rank name that is not a safe file name (see
            :func:`check_rank_name`), or a kept species is called ``Other``.
    """

    def __init__(
        self,
        ranks: Sequence[str],
        ancestors: Mapping[str, Sequence[str]],
        bundled: Sequence[str] = (),
    ) -> None:
        self.ranks: tuple[str, ...] = tuple(check_rank_name(rank) for rank in ranks)
        self._ancestors = {
            canonical_name(s): tuple(map(canonical_name, a)) for s, a in ancestors.items()
        }
        self._ancestors = dict(sorted(self._ancestors.items()))
        if OTHER in self._ancestors:
            raise HierarchyError(f"a species may not be called {OTHER!r}: rename it")
        self.bundled: tuple[str, ...] = tuple(sorted(map(canonical_name, bundled)))
        species_classes = [OTHER, *self._ancestors]
        per_rank = [
            [OTHER, *sorted({names[i] for names in self._ancestors.values()} - {OTHER})]
            for i in range(len(self.ranks) - 1)
        ]
        self._classes = dict(zip(self.ranks, [species_classes, *per_rank], strict=True))
        self._index = {r: {n: i for i, n in enumerate(c)} for r, c in self._classes.items()}

    @classmethod
    def from_table(
        cls,
        table: HierarchyTable,
        species_counts: Mapping[str, int] | None = None,
        min_samples: int = 0,
    ) -> LabelHierarchy:
        """Keep the species of ``table`` that have data, bundle the rest into ``Other``.

        Args:
            table: species and ancestors, as read by a :class:`HierarchySource`.
            species_counts: images per species in the training data. ``None``
                keeps every species of the table (no data to check against).
            min_samples: species with fewer images than this are bundled.

        Raises:
            HierarchyError: every species ends up in ``Other``.
        """
        if species_counts is None:
            kept = dict(table.ancestors)
            bundled: list[str] = []
        else:
            counts = {canonical_name(s): n for s, n in species_counts.items()}
            kept = {
                s: a for s, a in table.ancestors.items() if counts.get(s, 0) >= max(min_samples, 1)
            }
            bundled = [s for s in counts if s not in kept]
        if not kept:
            raise HierarchyError(
                f"{table.origin}: every species is bundled into {OTHER!r} "
                f"(min_samples={min_samples}; {len(table.ancestors)} species in the hierarchy, "
                f"{len(species_counts or {})} in the data): lower min_samples or check that "
                "the data's species folder names match the hierarchy's species names"
            )
        return cls(table.ranks, kept, bundled)

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        species_counts: Mapping[str, int] | None = None,
        min_samples: int = 0,
    ) -> LabelHierarchy:
        """Read a hierarchy CSV (either form, see :func:`.read_hierarchy_csv`) and build it."""
        return cls.from_table(read_hierarchy_csv(path), species_counts, min_samples)

    def classes(self, rank: str) -> list[str]:
        """Class names at ``rank``; index 0 is ``Other``, the rest sorted."""
        return list(self._classes[self._check_rank(rank)])

    def num_classes(self) -> dict[str, int]:
        """Number of classes (``Other`` included) per rank."""
        return {r: len(c) for r, c in self._classes.items()}

    def ranks_by_specificity(self) -> tuple[str, ...]:
        """Ranks from most to least specific: species, then the others by their number
        of classes (a narrower rank has at least as many as the rank it nests in).

        Ties keep the seed's reading of the file, broad to narrow after species, so
        ``species, group, family, genus`` gives ``species, genus, family, group``.
        """
        counts = self.num_classes()
        others = sorted(reversed(self.ranks[1:]), key=lambda rank: -counts[rank])
        return (self.ranks[0], *others)

    def index(self, rank: str, name: str) -> int:
        """Class index of ``name`` at ``rank``. Raises KeyError for an unknown name."""
        try:
            return self._index[self._check_rank(rank)][name]
        except KeyError:
            raise KeyError(f"{name!r} is not a class at rank {rank!r}") from None

    def ancestors(self, species: str) -> dict[str, str]:
        """Names at every rank for ``species``; all ``Other`` for a bundled or unknown one."""
        species = canonical_name(species)
        names = self._ancestors.get(species)
        if names is None:
            return dict.fromkeys(self.ranks, OTHER)
        return dict(zip(self.ranks, (species, *names), strict=True))

    def unknown(self) -> dict[str, list[str]]:
        """Rank -> the species not known at that rank (in ``Other`` there), for ranks
        that have any; a bundled species is not listed."""
        found = {
            rank: [s for s, names in self._ancestors.items() if names[i] == OTHER]
            for i, rank in enumerate(self.ranks[1:])
        }
        return {rank: species for rank, species in found.items() if species}

    def nesting_conflicts(self) -> dict[tuple[str, str], dict[str, list[str]]]:
        """Where a rank is not nested in the next broader one (see
        :meth:`ranks_by_specificity`): (rank, broader rank) -> each name at ``rank``
        that sits under several names of the broader rank -> those names.

        Training and the roll-up do not need a tree (every rank has its own head);
        this says where reading the ranks as one would mislead. ``Other`` is left out.
        """
        order = self.ranks_by_specificity()
        column = {rank: i - 1 for i, rank in enumerate(self.ranks)}
        conflicts: dict[tuple[str, str], dict[str, list[str]]] = {}
        for narrow, broad in zip(order[1:-1], order[2:], strict=True):
            parents: dict[str, set[str]] = {}
            for names in self._ancestors.values():
                child, parent = names[column[narrow]], names[column[broad]]
                if OTHER not in (child, parent):
                    parents.setdefault(child, set()).add(parent)
            several = {c: sorted(p) for c, p in sorted(parents.items()) if len(p) > 1}
            if several:
                conflicts[(narrow, broad)] = several
        return conflicts

    def targets(self, species: str) -> tuple[int, ...]:
        """Class index at every rank (head order) for a training sample of ``species``."""
        return tuple(self._index[r][n] for r, n in self.ancestors(species).items())

    def to_json(self) -> str:
        """A JSON form that :meth:`from_json` reads back to an equal hierarchy."""
        return json.dumps(
            {
                "format": _JSON_FORMAT,
                "ranks": list(self.ranks),
                "classes": self._classes,
                "species": {s: list(a) for s, a in self._ancestors.items()},
                "bundled": list(self.bundled),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> LabelHierarchy:
        """Read the form written by :meth:`to_json`; checks that the classes agree."""
        data = json.loads(text)
        if data.get("format") != _JSON_FORMAT:
            raise HierarchyError(f"unsupported label hierarchy format {data.get('format')!r}")
        hierarchy = cls(data["ranks"], data["species"], data.get("bundled", ()))
        stored = {r: [canonical_name(n) for n in c] for r, c in data["classes"].items()}
        if hierarchy._classes != stored:
            raise HierarchyError("label hierarchy JSON: class lists disagree with the species")
        return hierarchy

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelHierarchy):
            return NotImplemented
        return (self.ranks, self._ancestors, self.bundled) == (
            other.ranks,
            other._ancestors,
            other.bundled,
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{r}={n}" for r, n in self.num_classes().items())
        return f"LabelHierarchy({counts}, bundled={len(self.bundled)})"

    def _check_rank(self, rank: str) -> str:
        if rank not in self._classes:
            raise KeyError(f"unknown rank {rank!r}; the ranks are {', '.join(self.ranks)}")
        return rank
