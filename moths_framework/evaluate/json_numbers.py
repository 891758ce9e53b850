"""Numbers for a JSON file: JSON has no NaN, so a number that cannot be computed is ``null``."""

from __future__ import annotations

import math

__all__ = ["nan_as_null"]


def nan_as_null(value):
    """``value`` with every NaN float (in dicts and lists, at any depth) replaced by ``None``."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nan_as_null(v) for v in value]
    return value
