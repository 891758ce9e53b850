"""Reading a CSV file that must have certain columns: one place opens it (UTF-8, a
spreadsheet's byte-order mark allowed), reads its header, and words what is wrong with it
in one line (not found, a folder, not UTF-8, empty, columns missing), raised as the
caller's own error class. No torch."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from moths_framework.messages import first_few

__all__ = ["CsvTable", "csv_table"]


@dataclass
class CsvTable:
    """An open CSV file past its header.

    Attributes:
        path: the file.
        header: its column names, as written less surrounding spaces.
        rows: each later row's cells as :func:`csv.reader` gives them (blank rows as ``[]``).
    """

    path: Path
    header: list[str]
    rows: Iterator[list[str]]

    def records(self) -> Iterator[dict[str | None, str | list[str] | None]]:
        """The later rows as :class:`csv.DictReader` gives them: column -> cell, ``None``
        for the columns past a short row's end, a long row's extra cells as a list under
        ``None``; blank rows skipped."""
        width = len(self.header)
        for row in self.rows:
            if not row:
                continue
            record: dict[str | None, str | list[str] | None] = dict(
                zip(self.header, row, strict=False)
            )
            if len(row) > width:
                record[None] = row[width:]
            for column in self.header[len(row) :]:
                record[column] = None
            yield record


@contextmanager
def csv_table(
    path: str | os.PathLike,
    columns: Sequence[str],
    what: str,
    error: type[Exception] = ValueError,
) -> Iterator[CsvTable]:
    """Open the CSV file ``path`` and read its header, which must name every one of
    ``columns``; the file stays open inside the ``with``.

    Args:
        path: the file.
        columns: the columns it must have (others may come too, in any order).
        what: what the file should be, for the messages: ``"a tracks.csv from moths-track"``.
        error: the class raised, with a one-line message naming the file and ``what``.

    Raises:
        error: the file is not found, a folder, unreadable, not UTF-8 (here or while the
            rows are read), empty, lacks some of ``columns`` (all named, in their order),
            or is no valid CSV (the line named).
    """
    path = Path(path)
    expected = f"(expected {what})"
    try:
        file = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{path} not found {expected}") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a file {expected}") from None
    except OSError as failure:
        raise error(f"cannot read {path}: {failure.strerror or failure}") from None
    with file:
        reader = csv.reader(file)
        try:
            first = next(reader, None)
            header = [name.strip() for name in first or []]
            if not any(header):
                raise error(
                    f"{path} {'is empty' if first is None else 'has no header row'} {expected}"
                )
            missing = [c for c in columns if c not in header]
            if missing:
                raise error(
                    f"{path} lacks column(s) {', '.join(missing)} {expected}; "
                    f"its columns: {first_few(header, 8)}"
                )
            yield CsvTable(path, header, reader)
        except UnicodeDecodeError:
            raise error(f"{path} is not UTF-8 text {expected}") from None
        except csv.Error as failure:
            raise error(f"{path}, line {reader.line_num}: {failure}") from None
        except OSError as failure:
            raise error(f"cannot read {path}: {failure.strerror or failure}") from None
