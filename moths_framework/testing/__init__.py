"""Public contract checks for plugin authors (like scikit-learn's ``check_estimator``).

A plugin tests itself in one line::

    from moths_framework.testing import check_backbone

    def test_my_backbone_follows_the_contract():
        check_backbone(MyNet)

Every group's check (the ``check`` column of :data:`moths_framework.plugins.GROUPS`)
takes the same arguments, ``check_<x>(plugin, /, **init_args)``: a class,
built by ``small_example()`` when it has one and no ``init_args`` are given,
else by ``plugin(**init_args)``; a factory function; or an instance. When
clauses fail it raises one :class:`ContractError` with one line per failing
clause.

May import every library package below ``cli``, since it checks plugins of each group.
"""

from __future__ import annotations

from typing import Any

from moths_framework.plugins import plugin_group
from moths_framework.testing.backbones import (
    BACKBONE_CHECKS,
    BackboneContractError,
    check_backbone,
)
from moths_framework.testing.contract import ContractError
from moths_framework.testing.data_sources import DATA_SOURCE_CHECKS, check_data_source
from moths_framework.testing.detectors import (
    DETECTOR_CHECKS,
    DetectorContractError,
    check_detector,
)
from moths_framework.testing.label_hierarchies import (
    HIERARCHY_SOURCE_CHECKS,
    check_hierarchy_source,
)
from moths_framework.testing.unfreeze_policies import (
    UNFREEZE_POLICY_CHECKS,
    check_unfreeze_policy,
)

__all__ = [
    "BACKBONE_CHECKS",
    "DATA_SOURCE_CHECKS",
    "DETECTOR_CHECKS",
    "HIERARCHY_SOURCE_CHECKS",
    "UNFREEZE_POLICY_CHECKS",
    "BackboneContractError",
    "ContractError",
    "DetectorContractError",
    "check_backbone",
    "check_data_source",
    "check_detector",
    "check_hierarchy_source",
    "check_plugin",
    "check_unfreeze_policy",
]


def check_plugin(group: str, plugin: Any, /, **init_args: Any) -> None:
    """Run the contract check of ``group`` (e.g. ``backbones``) on ``plugin``.

    Raises:
        ContractError: one line per failing clause.
        moths_framework.plugins.PluginError: an unknown group.
    """
    plugin_group(group).contract_check()(plugin, **init_args)
