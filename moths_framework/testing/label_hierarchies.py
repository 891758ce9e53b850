"""The label hierarchy contract: ``read()`` gives species-first ranks and every
species one name per other rank."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moths_framework.hierarchy import HierarchySource, HierarchyTable
from moths_framework.messages import first_few
from moths_framework.testing.contract import build_plugin, require, run_clauses

__all__ = ["HIERARCHY_SOURCE_CHECKS", "check_hierarchy_source"]


def check_read_gives_a_table(source: HierarchySource) -> None:
    table = source.read()
    require(isinstance(table, HierarchyTable), f"read() returned {type(table).__name__}")
    require(table.ranks[:1] == ("species",), f"ranks {table.ranks} do not start with species")
    require(bool(table.ancestors), "read() lists no species")
    width = len(table.ranks) - 1
    wrong = [s for s, a in table.ancestors.items() if len(a) != width]
    require(not wrong, f"species without one name per rank {table.ranks[1:]}: {first_few(wrong)}")


#: Clause name -> check; each raises AssertionError with the reason.
HIERARCHY_SOURCE_CHECKS: dict[str, Callable[[HierarchySource], None]] = {
    "read() gives a table": check_read_gives_a_table,
}


def check_hierarchy_source(plugin: Any, /, **init_args: Any) -> None:
    """Check that a label hierarchy source follows the contract of :class:`HierarchySource`.

    Args:
        plugin: a ``HierarchySource`` subclass or factory (built with
            ``init_args``), or an instance.
        **init_args: the arguments to build it with.

    Raises:
        ContractError: it cannot be built, or one line per failing clause.
    """
    source = build_plugin(plugin, "label_hierarchies", init_args)
    run_clauses(source, "label hierarchy", HIERARCHY_SOURCE_CHECKS)
