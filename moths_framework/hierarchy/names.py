"""The rules every class and rank name of a hierarchy follows, whatever file it came from.

Names are NFC-normalised and stripped (:func:`canonical_name`), so a name typed
on a Mac (NFD) and the same name from a CSV are one class. ``Other`` (:data:`OTHER`)
is the class of everything else: no real species or ancestor may be called so.
Rank names become file names, so they must be safe ones (:func:`check_rank_name`).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["OTHER", "HierarchyError", "canonical_name", "check_rank_name"]

OTHER = "Other"
# Rank names become file names (moths-evaluate's confusion/<rank>.csv) and output names:
# a rank from a shared hierarchy file must not be able to say "../../x".
_RANK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RANK_RULE = "a rank name is a letter, then up to 63 letters, digits, _ or - (ASCII)"


class HierarchyError(ValueError):
    """A hierarchy file or table is unusable; the message names file and line."""


def canonical_name(name: str) -> str:
    """A class name as the hierarchy stores it: whitespace stripped, Unicode NFC."""
    return unicodedata.normalize("NFC", name.strip())


def check_rank_name(rank: object, origin: str = "label hierarchy") -> str:
    """Return ``rank`` if it is a safe rank name, i.e. usable as a file name as it is.

    Raises:
        HierarchyError: naming ``origin``, the rank and the rule.
    """
    if not isinstance(rank, str) or not _RANK_NAME.fullmatch(rank):
        raise HierarchyError(f"{origin}: rank {rank!r} is refused: {_RANK_RULE}")
    return rank
