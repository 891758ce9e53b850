"""How error messages name things: lists short enough to read at a glance. No torch."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["first_few"]


def first_few(names: Sequence[str], limit: int = 5) -> str:
    """``names`` joined by commas, cut after ``limit``: ``"a, b, c, d, e and 3 more"``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
