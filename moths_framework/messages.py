"""How error messages name things: lists short enough to read at a glance, an error in
one line. No torch."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["first_few", "one_line"]


def first_few(names: Sequence[str], limit: int = 5) -> str:
    """``names`` joined by commas, cut after ``limit``: ``"a, b, c, d, e and 3 more"``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def one_line(err: BaseException, limit: int = 300) -> str:
    """``err`` as one line: its type, then its message with the line breaks taken out
    (``"ValueError: first line second line"``), cut after ``limit`` characters."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    line = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"
