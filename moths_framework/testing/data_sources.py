"""The data source contract: ``samples()`` lists ``Sample`` objects, the same on every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moths_framework.data.sources import DataSource, Sample
from moths_framework.testing.contract import build_plugin, require, run_clauses

__all__ = ["DATA_SOURCE_CHECKS", "check_data_source"]


def check_samples_are_samples(source: DataSource) -> None:
    samples = source.samples()
    require(isinstance(samples, list), f"samples() returned {type(samples).__name__}")
    wrong = [s for s in samples if not isinstance(s, Sample)]
    require(not wrong, f"samples() holds {len(wrong)} items that are not Sample")
    blank = [s for s in samples if not str(s.species).strip()]
    require(not blank, f"{len(blank)} samples have an empty species name")


def check_samples_are_deterministic(source: DataSource) -> None:
    require(source.samples() == source.samples(), "two samples() calls differ")


#: Clause name -> check; each raises AssertionError with the reason.
DATA_SOURCE_CHECKS: dict[str, Callable[[DataSource], None]] = {
    "samples() lists Sample objects": check_samples_are_samples,
    "samples() is deterministic": check_samples_are_deterministic,
}


def check_data_source(plugin: Any, /, **init_args: Any) -> None:
    """Check that a data source follows the contract of :class:`DataSource`.

    Args:
        plugin: a ``DataSource`` subclass or factory (built with ``init_args``),
            or an instance.
        **init_args: the arguments to build it with.

    Raises:
        ContractError: it cannot be built, or one line per failing clause.
    """
    source = build_plugin(plugin, "data_sources", init_args)
    run_clauses(source, "data source", DATA_SOURCE_CHECKS)
