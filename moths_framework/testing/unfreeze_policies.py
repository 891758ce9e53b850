"""The unfreeze policy contract: ``fraction(epoch)`` lies in [0, 1] and never decreases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moths_framework.testing.contract import build_plugin, require, run_clauses
from moths_framework.train.unfreeze import UnfreezePolicy

__all__ = ["UNFREEZE_POLICY_CHECKS", "check_unfreeze_policy"]

EPOCHS = 30  # epochs the fractions are checked over


def check_fractions_are_valid(policy: UnfreezePolicy) -> None:
    values = [float(policy.fraction(e)) for e in range(EPOCHS)]
    bad = [e for e, v in enumerate(values) if not 0.0 <= v <= 1.0]
    require(not bad, f"fraction(epoch) outside [0, 1] at epochs {bad[:5]}")
    down = [e for e in range(1, EPOCHS) if values[e] < values[e - 1]]
    require(not down, f"fraction(epoch) decreases at epochs {down[:5]}")


#: Clause name -> check; each raises AssertionError with the reason.
UNFREEZE_POLICY_CHECKS: dict[str, Callable[[UnfreezePolicy], None]] = {
    "fraction(epoch) is valid": check_fractions_are_valid,
}


def check_unfreeze_policy(plugin: Any, /, **init_args: Any) -> None:
    """Check that an unfreeze policy follows the contract of :class:`UnfreezePolicy`
    over the first :data:`EPOCHS` epochs.

    Args:
        plugin: an ``UnfreezePolicy`` subclass or factory (built with
            ``init_args``), or an instance.
        **init_args: the arguments to build it with.

    Raises:
        ContractError: it cannot be built, or one line per failing clause.
    """
    policy = build_plugin(plugin, "unfreeze_policies", init_args)
    run_clauses(policy, "unfreeze policy", UNFREEZE_POLICY_CHECKS)
