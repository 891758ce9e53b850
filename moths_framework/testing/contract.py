"""What every contract check shares: building the plugin under test, running its
clauses, and one report with a line per failing clause."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from moths_framework.plugins import plugin_group

__all__ = ["Clause", "ContractError", "build_plugin", "rebuilt_from_spec", "require", "run_clauses"]


class ContractError(AssertionError):
    """A plugin breaks one or more clauses of its group's contract; one line per clause."""


class Clause(AssertionError):
    """One failed clause."""


def require(condition: bool, message: str) -> None:
    """Fail the clause being run with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Clause(message)


def _name(plugin: Any) -> str:
    return getattr(plugin, "__qualname__", None) or type(plugin).__name__


def _call(plugin: Any, init_args: dict[str, Any]) -> tuple[str, Callable[[], Any], bool]:
    """How a class or factory is built, that call written out, and whether it is
    ``small_example()`` (used when the class has one and no ``init_args`` are given)."""
    if not init_args and callable(getattr(plugin, "small_example", None)):
        return f"{_name(plugin)}.small_example()", plugin.small_example, True
    args = ", ".join(f"{k}={v!r}" for k, v in init_args.items())
    return f"{_name(plugin)}({args})", lambda: plugin(**init_args), False


def build_plugin(
    plugin: Any, group: str, init_args: dict[str, Any], error: type[ContractError] = ContractError
) -> Any:
    """The instance to check: ``plugin`` itself when it is an instance of the group's
    base class, else what the class (or factory) ``plugin`` builds.

    Raises:
        error: ``plugin`` is a class of another kind, building it fails, or it
            builds something that is not an instance of the base class.
        TypeError: ``init_args`` given with an instance.
    """
    row = plugin_group(group)
    base = row.base_class()
    base_path = row.base.replace(":", ".")
    if isinstance(plugin, base):
        if init_args:
            raise TypeError(
                f"init_args {sorted(init_args)} need a class or factory, not an instance"
            )
        return plugin
    if isinstance(plugin, type) and not issubclass(plugin, base):
        raise error(f"{_name(plugin)} is not a subclass of {base_path}")
    if not callable(plugin):
        raise error(f"{_name(plugin)} is not a {base_path}, nor a class or factory building one")
    call, make, by_example = _call(plugin, init_args)
    try:
        instance = make()
    except Exception as err:  # any failure here is the plugin's
        raise error(f"{call} failed: {type(err).__name__}: {err}") from err
    if by_example and type(instance) is not plugin:
        raise error(f"{call} returned a {type(instance).__name__}, not a {_name(plugin)}")
    if not isinstance(instance, base):
        raise error(f"{call} returned a {type(instance).__name__}, not a {base_path}")
    return instance


def run_clauses(
    instance: Any,
    kind: str,
    clauses: Mapping[str, Callable[[Any], None]],
    error: type[ContractError] = ContractError,
    name: str | None = None,
) -> None:
    """Run every clause on ``instance``; a clause fails by assertion or by crashing.

    Raises:
        error: ``"<name> breaks N of M <kind> contract clauses:"`` (``name``: the
            instance's class by default) and one line per failing clause.
    """
    failures = []
    for clause, check in clauses.items():
        try:
            check(instance)
        except Exception as err:
            reason = str(err) if isinstance(err, AssertionError) else f"{type(err).__name__}: {err}"
            failures.append(f"  - {clause}: {reason}")
    if failures:
        raise error(
            f"{name or type(instance).__qualname__} breaks {len(failures)} of {len(clauses)} "
            f"{kind} contract clauses:\n" + "\n".join(failures)
        )


def rebuilt_from_spec(plugin: Any) -> tuple[Any, dict[str, Any]]:
    """``plugin.spec()`` checked as plain JSON data, and a new object built from it."""
    spec = plugin.spec()
    try:
        json.dumps(spec)  # travels inside checkpoints and ONNX metadata: plain data only
    except TypeError as err:
        raise Clause(f"spec() is not plain JSON data: {err}") from err
    module_name, _, class_name = spec["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise Clause(f"spec() class_path {spec['class_path']!r} does not import: {err}") from err
    rebuilt = cls(**spec["init_args"])
    require(type(rebuilt) is type(plugin), f"spec() rebuilds a {type(rebuilt).__name__}")
    return rebuilt, spec
