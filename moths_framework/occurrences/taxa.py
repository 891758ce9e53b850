"""What kind of answer a track gave: a taxon, ``Other``, a non-moth, or none.

A Darwin Core occurrence names a taxon. ``Other (not one of the trained species)``
(the classifier's ``Other`` class, or a track most of whose crops the novelty
detector marked novel), a non-moth (a detector or filter class such as
``non-moth``) and a track without an answer (boxes only, no classifier) name none:
``moths-dwc`` leaves them out unless asked, and says how many it left out. No torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from moths_framework.hierarchy import OTHER

__all__ = [
    "KINDS",
    "KIND_WORDS",
    "NON_MOTH",
    "OTHER_KIND",
    "TAXON",
    "UNIDENTIFIED",
    "is_non_moth",
    "kind_of",
]

TAXON, OTHER_KIND, NON_MOTH, UNIDENTIFIED = "taxon", "other", "non-moth", "unidentified"
KINDS = (TAXON, OTHER_KIND, NON_MOTH, UNIDENTIFIED)
# how summaries name the kinds that are not a taxon
KIND_WORDS = {OTHER_KIND: "Other", NON_MOTH: "non-moth", UNIDENTIFIED: "without an answer"}
# "non-moth", "non_moth", "nonmoth", "not a moth", "Not moth", "non-moth (wasp)" ...
_NON_MOTH = re.compile(r"^\s*no[nt][\s_-]*(a[\s_-]+)?moths?\b", re.IGNORECASE)


def is_non_moth(name: str) -> bool:
    """True for a class name that says "not a moth" (``non-moth``, ``not_moth``,
    ``non-moth (wasp)`` ...)."""
    return bool(_NON_MOTH.match(name))


def kind_of(taxon: str) -> str:
    """:data:`TAXON`, :data:`OTHER_KIND`, :data:`NON_MOTH` or :data:`UNIDENTIFIED` (empty)."""
    if not taxon.strip():
        return UNIDENTIFIED
    if taxon == OTHER or taxon.startswith(f"{OTHER} ("):
        return OTHER_KIND
    if is_non_moth(taxon):
        return NON_MOTH
    return TAXON


def kinds_in_words(individuals: Mapping[str, int], every_kind: bool = False) -> str:
    """``"1 Other, 2 non-moth"``: individuals per kind that is not a taxon (those with
    none left out unless ``every_kind``)."""
    return ", ".join(
        f"{individuals.get(kind, 0)} {words}"
        for kind, words in KIND_WORDS.items()
        if every_kind or individuals.get(kind, 0)
    )
