"""Reading a hierarchy CSV file into a :class:`HierarchyTable`, in either of two forms.

- The seed's: ``;``-separated, ``"``-quoted, header
  ``speciesName;nederNaam;group;family;genus``.
- A plain comma CSV whose header names the ranks, species first
  (e.g. ``species,genus,family``; ``species`` alone is a one-rank hierarchy, such as a
  moth / non-moth filter's).

A UTF-8 BOM and whitespace around names (real files have trailing tabs) are
tolerated, names are NFC-normalised. A species listed twice with the same
ancestors is fine. A placeholder ancestor (``xxx``, ``-``, ``unknown``, empty)
means "not known at this rank": the species belongs to ``Other`` there. A name
``Other`` (any case) is an error: that class is the bundle of everything else.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from moths_framework.hierarchy.names import (
    OTHER,
    HierarchyError,
    canonical_name,
    check_rank_name,
)
from moths_framework.hierarchy.table import HierarchyTable

__all__ = ["DEFAULT_PLACEHOLDERS", "SEED_RANKS", "read_hierarchy_csv"]

SEED_RANKS: tuple[str, ...] = ("species", "group", "family", "genus")
_SEED_SPECIES_COLUMN = "speciesName"
# Columns of the seed's file that name a species in another language, not a rank.
_NAME_COLUMNS = frozenset({"nederNaam", "common_name", "vernacular_name"})
# Names real hierarchy files use for "not known at this rank" (compared case-insensitively).
# An empty cell always means unknown, whatever the placeholders.
DEFAULT_PLACEHOLDERS: tuple[str, ...] = ("xxx", "-", "unknown")

_Columns = list[tuple[str, int]]  # (rank name, column index) pairs, species first


def read_hierarchy_csv(
    path: str | Path,
    ranks: Sequence[str] | None = None,
    placeholders: Sequence[str] | None = None,
) -> HierarchyTable:
    """Read a hierarchy CSV file (either form) into a table.

    Args:
        path: the CSV file.
        ranks: the rank columns to use, species first. Default: every column
            of the header except Dutch/common-name columns, and for the
            seed's form exactly ``species, group, family, genus``.
        placeholders: the names that mean "unknown at this rank", compared
            case-insensitively; replaces :data:`DEFAULT_PLACEHOLDERS`. An empty
            cell always means unknown.

    Raises:
        HierarchyError: naming the file and line of what is wrong.
    """
    path = Path(path)
    chosen = DEFAULT_PLACEHOLDERS if placeholders is None else placeholders
    unknown = frozenset({"", *(canonical_name(p).casefold() for p in chosen)})
    rows = _rows(path)
    header, body = rows[0], rows[1:]
    columns = _columns(path, header[1], ranks)
    ancestors: dict[str, tuple[str, ...]] = {}
    first_line: dict[str, int] = {}
    for line, row in body:
        if not any(field.strip() for field in row):
            continue
        where = f"{path}:{line}"
        species, names = _parse_row(where, row, columns, len(header[1]), unknown)
        if species in ancestors and ancestors[species] != names:
            raise HierarchyError(
                f"{where}: species {species!r} is listed again with other "
                f"ancestors {names} (line {first_line[species]} says {ancestors[species]})"
            )
        ancestors.setdefault(species, names)
        first_line.setdefault(species, line)
    if not ancestors:
        raise HierarchyError(f"{path}: no species rows below the header")
    return HierarchyTable(ranks=tuple(r for r, _ in columns), ancestors=ancestors, origin=str(path))


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-empty row, the header first."""
    if not path.is_file():
        raise HierarchyError(f"{path}: hierarchy file not found")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise HierarchyError(f"{path}: the hierarchy file is empty")
    first = text.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter, quotechar='"')
    return [(reader.line_num, row) for row in reader if row]


def _columns(path: Path, header: list[str], ranks: Sequence[str] | None) -> _Columns:
    """The rank columns to read: ``ranks`` if given, else the form's own."""
    header = [h.strip() for h in header]
    named = {("species" if i == 0 else h): i for i, h in enumerate(header)}
    if ranks is not None:
        wanted = tuple(ranks)
    elif header[0] == _SEED_SPECIES_COLUMN:
        wanted = SEED_RANKS
    else:
        wanted = tuple(n for n in named if n not in _NAME_COLUMNS)
    if wanted[0] != "species":
        raise HierarchyError(f"{path}: the first rank must be 'species', got {wanted}")
    missing = [r for r in wanted if r not in named]
    if missing:
        raise HierarchyError(
            f"{path}:1: missing rank column(s) {', '.join(missing)}; "
            f"the header has: {', '.join(header)}"
        )
    for rank in wanted:
        check_rank_name(rank, f"{path}:1")
    return [(r, named[r]) for r in wanted]


def _parse_row(
    where: str, row: list[str], columns: _Columns, width: int, unknown: frozenset[str]
) -> tuple[str, tuple[str, ...]]:
    """One row's species and its names at the other ranks (``Other`` where unknown)."""
    if len(row) != width:
        raise HierarchyError(f"{where}: expected {width} fields, found {len(row)}: {row}")
    values = [canonical_name(row[i]) for _, i in columns]
    for (rank, _), value in zip(columns, values, strict=True):
        if value.casefold() == OTHER.casefold() and value.casefold() not in unknown:
            raise HierarchyError(
                f"{where}: {rank} name {value!r} is reserved for the class of "
                "everything else; rename it, or list it as a placeholder if it means unknown"
            )
    species = values[0]
    if species.casefold() in unknown:
        raise HierarchyError(f"{where}: no species name in {row}")
    known = (OTHER if v.casefold() in unknown else v for v in values[1:])
    return species, tuple(known)
