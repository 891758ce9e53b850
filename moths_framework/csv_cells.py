"""Text cells of the CSV files we write, made safe to open in a spreadsheet, and read back.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return) as a formula: a species folder named ``=HYPERLINK(...)`` would become
a live link in whoever opens ``manifest.csv``. OWASP's remedy, applied here: such a
cell gets a single quote in front, which spreadsheets show as text. Only text cells
(names, paths, messages) go through :func:`spreadsheet_safe`; numbers such as a
score of ``-1.5`` are written as they are.

:func:`from_spreadsheet_safe` takes the quote off again, so what the project reads
back from its own CSV files equals what it wrote. A text that already starts with
quotes followed by one of those characters (``'=x``) gets one more quote too, so the
quote taken off is always the one that was added.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FORMULA_STARTS", "from_spreadsheet_safe", "spreadsheet_safe", "spreadsheet_safe_row"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _needs_quote(text: str) -> bool:
    return text.lstrip("'").startswith(FORMULA_STARTS)


def spreadsheet_safe(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet runs as a formula (``'`` in front if needed)."""
    return f"'{text}" if _needs_quote(text) else text


def from_spreadsheet_safe(text: str) -> str:
    """The text a cell written by :func:`spreadsheet_safe` holds (the inverse)."""
    return text[1:] if text.startswith("'") and _needs_quote(text) else text


def spreadsheet_safe_row(cells: Iterable[object]) -> list[object]:
    """A CSV row with every ``str`` cell made :func:`spreadsheet_safe`; numbers as they are."""
    return [spreadsheet_safe(cell) if isinstance(cell, str) else cell for cell in cells]
