"""Label hierarchy: species and their ancestors at every rank, with ``Other`` bundling.

Two things live here:

- :class:`HierarchySource`, the plugin interface (entry-point group
  ``moths_framework.label_hierarchies``): something that reads a table of
  species and their ancestors. The built-in ``csv`` is :class:`CsvHierarchy`.
- :class:`LabelHierarchy`, the class indices a model is trained on. Index 0
  at every rank is ``Other``: species with fewer than ``min_samples`` images
  and species missing from the table land there. It travels inside
  checkpoints and ONNX files as JSON.

Names are NFC-normalised and stripped everywhere (:func:`canonical_name`), so
a name typed on a Mac (NFD) and the same name from a CSV are one class. A
species may be unknown at a rank (the CSV says ``xxx``, ``-``, ``unknown`` or
nothing): it then belongs to ``Other`` at that rank only. No real species or
ancestor may be called ``Other``.

No torch import: the inference side uses this module too.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PLACEHOLDERS",
    "OTHER",
    "SEED_RANKS",
    "CsvHierarchy",
    "HierarchyError",
    "HierarchySource",
    "HierarchyTable",
    "LabelHierarchy",
    "canonical_name",
    "check_rank_name",
]

OTHER = "Other"
SEED_RANKS: tuple[str, ...] = ("species", "group", "family", "genus")
_SEED_SPECIES_COLUMN = "speciesName"
# Columns of the seed's file that name a species in another language, not a rank.
_NAME_COLUMNS = frozenset({"nederNaam", "common_name", "vernacular_name"})
_JSON_FORMAT = 1
# Names real hierarchy files use for "not known at this rank" (compared case-insensitively).
# An empty cell always means unknown, whatever the placeholders.
DEFAULT_PLACEHOLDERS: tuple[str, ...] = ("xxx", "-", "unknown")
# Rank names become file names (moths-evaluate's confusion/<rank>.csv) and output names:
# a rank from a shared hierarchy file must not be able to say "../../x".
_RANK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RANK_RULE = "a rank name is a letter, then up to 63 letters, digits, _ or - (ASCII)"


def canonical_name(name: str) -> str:
    """A class name as the hierarchy stores it: whitespace stripped, Unicode NFC."""
    return unicodedata.normalize("NFC", name.strip())


class HierarchyError(ValueError):
    """A hierarchy file or table is unusable; the message names file and line."""


def check_rank_name(rank: object, origin: str = "label hierarchy") -> str:
    """Return ``rank`` if it is a safe rank name, i.e. usable as a file name as it is.

    Raises:
        HierarchyError: naming ``origin``, the rank and the rule.
    """
    if not isinstance(rank, str) or not _RANK_NAME.fullmatch(rank):
        raise HierarchyError(f"{origin}: rank {rank!r} is refused: {_RANK_RULE}")
    return rank


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

    A UTF-8 BOM and whitespace around names (real files have trailing tabs)
    are tolerated, names are NFC-normalised. A species listed twice with the
    same ancestors is fine. A placeholder ancestor (``xxx``, ``-``,
    ``unknown``, empty) means "not known at this rank": the species belongs to
    ``Other`` there. A name ``Other`` (any case) is an error: that class is
    the bundle of everything else.

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
        chosen = DEFAULT_PLACEHOLDERS if placeholders is None else placeholders
        self.placeholders = frozenset({"", *(canonical_name(p).casefold() for p in chosen)})

    def read(self) -> HierarchyTable:
        rows = self._rows()
        header, body = rows[0], rows[1:]
        columns = self._columns(header)
        ancestors: dict[str, tuple[str, ...]] = {}
        first_line: dict[str, int] = {}
        for line, row in body:
            if not any(field.strip() for field in row):
                continue
            species, names = self._parse_row(line, row, columns, len(header[1]))
            if species in ancestors and ancestors[species] != names:
                raise HierarchyError(
                    f"{self.path}:{line}: species {species!r} is listed again with other "
                    f"ancestors {names} (line {first_line[species]} says {ancestors[species]})"
                )
            ancestors.setdefault(species, names)
            first_line.setdefault(species, line)
        if not ancestors:
            raise HierarchyError(f"{self.path}: no species rows below the header")
        ranks = tuple(name for name, _ in columns)
        return HierarchyTable(ranks=ranks, ancestors=ancestors, origin=str(self.path))

    def _rows(self) -> list[tuple[int, list[str]]]:
        if not self.path.is_file():
            raise HierarchyError(f"{self.path}: hierarchy file not found")
        text = self.path.read_text(encoding="utf-8-sig")
        if not text.strip():
            raise HierarchyError(f"{self.path}: the hierarchy file is empty")
        first = text.splitlines()[0]
        delimiter = ";" if first.count(";") > first.count(",") else ","
        reader = csv.reader(text.splitlines(), delimiter=delimiter, quotechar='"')
        return [(reader.line_num, row) for row in reader if row]

    def _columns(self, header_row: tuple[int, list[str]]) -> list[tuple[str, int]]:
        """(rank name, column index) pairs, species first."""
        _, header = header_row
        header = [h.strip() for h in header]
        seed_form = header[0] == _SEED_SPECIES_COLUMN
        named = {("species" if i == 0 else h): i for i, h in enumerate(header)}
        if self.ranks is not None:
            wanted = self.ranks
        elif seed_form:
            wanted = SEED_RANKS
        else:
            wanted = tuple(n for n in named if n not in _NAME_COLUMNS)
        if wanted[0] != "species":
            raise HierarchyError(f"{self.path}: the first rank must be 'species', got {wanted}")
        missing = [r for r in wanted if r not in named]
        if missing:
            raise HierarchyError(
                f"{self.path}:1: missing rank column(s) {', '.join(missing)}; "
                f"the header has: {', '.join(header)}"
            )
        if len(wanted) < 2:
            raise HierarchyError(f"{self.path}:1: no rank columns besides species in {header}")
        for rank in wanted:
            check_rank_name(rank, f"{self.path}:1")
        return [(r, named[r]) for r in wanted]

    def _parse_row(
        self, line: int, row: list[str], columns: list[tuple[str, int]], width: int
    ) -> tuple[str, tuple[str, ...]]:
        if len(row) != width:
            raise HierarchyError(
                f"{self.path}:{line}: expected {width} fields, found {len(row)}: {row}"
            )
        values = [canonical_name(row[i]) for _, i in columns]
        for (rank, _), value in zip(columns, values, strict=True):
            if value.casefold() == OTHER.casefold() and value.casefold() not in self.placeholders:
                raise HierarchyError(
                    f"{self.path}:{line}: {rank} name {value!r} is reserved for the class of "
                    "everything else; rename it, or list it as a placeholder if it means unknown"
                )
        species = values[0]
        if species.casefold() in self.placeholders:
            raise HierarchyError(f"{self.path}:{line}: no species name in {row}")
        known = (OTHER if v.casefold() in self.placeholders else v for v in values[1:])
        return species, tuple(known)


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
        """Read a hierarchy CSV (either form, see :class:`CsvHierarchy`) and build it."""
        return CsvHierarchy(path).build(species_counts, min_samples)

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
