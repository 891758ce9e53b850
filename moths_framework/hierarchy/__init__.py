"""Label hierarchy: species and their ancestors at every rank, with ``Other`` bundling.

One job a file: :mod:`.names` (the rules every name follows), :mod:`.table`
(what a source reads), :mod:`.csv_file` (the hierarchy CSV, either form),
:mod:`.label` (:class:`LabelHierarchy`, the class indices a model is trained on),
:mod:`.sources` (:class:`HierarchySource`, the plugin interface, and the built-in
:class:`CsvHierarchy`). No torch import: the inference side uses this package too.
"""

from moths_framework.hierarchy.csv_file import DEFAULT_PLACEHOLDERS, SEED_RANKS
from moths_framework.hierarchy.label import LabelHierarchy
from moths_framework.hierarchy.names import (
    OTHER,
    HierarchyError,
    canonical_name,
    check_rank_name,
)
from moths_framework.hierarchy.sources import CsvHierarchy, HierarchySource
from moths_framework.hierarchy.table import HierarchyTable

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
