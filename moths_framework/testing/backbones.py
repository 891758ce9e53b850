"""Public contract checks for plugin authors (like scikit-learn's ``check_estimator``).

A backbone plugin tests itself in one line::

    from moths_framework.testing import check_backbone

    def test_my_backbone_follows_the_contract():
        check_backbone(MyNet)

:func:`check_backbone` builds ``MyNet.small_example()`` and runs every clause of
the backbone contract on it; when clauses fail it raises one
:class:`BackboneContractError` with one line per failing clause.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from moths_framework.model.backbone import Backbone
from moths_framework.preprocessing import Preprocessing

__all__ = [
    "BACKBONE_CHECKS",
    "BackboneContractError",
    "ContractError",
    "check_backbone",
    "check_data_source",
    "check_hierarchy_source",
    "check_unfreeze_policy",
]

_BATCH = 2


class ContractError(AssertionError):
    """A plugin breaks one or more clauses of its group's contract; one line per clause."""


class BackboneContractError(ContractError):
    """A backbone breaks one or more clauses of the contract; one line per clause."""


class _Clause(AssertionError):
    """One failed clause (internal)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _Clause(message)


def _images(backbone: Backbone, size: Sequence[int] | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    shape = (_BATCH, 3, *(size or backbone.preprocessing.input_size))
    return torch.randn(shape, generator=generator)


def _small_size(backbone: Backbone) -> tuple[int, int]:
    """64 px when the backbone accepts it (CNNs), else its own input size: faster checks."""
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(_images(backbone, (64, 64)))
    except Exception:  # fixed-size models (ViTs) reject other sizes in many ways
        return tuple(backbone.preprocessing.input_size)
    return (64, 64)


def check_forward_returns_pooled_features(backbone: Backbone) -> None:
    backbone.eval()
    with torch.no_grad():
        features = backbone(_images(backbone))
    _require(isinstance(features, torch.Tensor), f"forward returned {type(features).__name__}")
    expected = (_BATCH, backbone.num_features)
    _require(
        tuple(features.shape) == expected,
        f"forward returned shape {tuple(features.shape)}, expected (batch, num_features) = "
        f"{expected}",
    )
    _require(bool(torch.isfinite(features).all()), "forward returned NaN or infinite values")


def check_backward_reaches_every_parameter(backbone: Backbone) -> None:
    x = _images(backbone, _small_size(backbone))
    backbone.train()  # a training-mode forward must also return one tensor (no aux heads)
    backbone.zero_grad(set_to_none=True)
    out = backbone(x)
    _require(isinstance(out, torch.Tensor), f"training-mode forward returned {type(out).__name__}")
    out.sum().backward()
    missing = [n for n, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    backbone.zero_grad(set_to_none=True)
    _require(not missing, f"parameters get no gradient (unused by forward?): {_few(missing)}")


def check_ordered_parameters_cover_each_once(backbone: Backbone) -> None:
    ordered = backbone.ordered_parameters()
    names = [name for name, _ in ordered]
    registered = dict(backbone.named_parameters())
    twice = sorted({n for n in names if names.count(n) > 1})
    _require(not twice, f"ordered_parameters() lists parameters twice: {_few(twice)}")
    left_out = [n for n in registered if n not in names]
    _require(not left_out, f"ordered_parameters() leaves out {_few(left_out)}")
    unknown = [n for n in names if n not in registered]
    _require(not unknown, f"ordered_parameters() names unknown parameters {_few(unknown)}")
    wrong = [name for name, p in ordered if registered[name] is not p]
    _require(not wrong, f"ordered_parameters() pairs names with other tensors: {_few(wrong)}")


def _leaf_owners_in_call_order(backbone: Backbone, x: torch.Tensor) -> list[tuple[nn.Module, Any]]:
    """Modules owning parameters (with no parameterised children), in first-call order."""
    owners = [
        m
        for m in backbone.modules()
        if any(True for _ in m.parameters(recurse=False))
        and not any(any(True for _ in c.parameters()) for c in m.children())
    ]
    calls: list[tuple[nn.Module, Any]] = []

    def record(module: nn.Module, args: tuple) -> None:
        if all(module is not m for m, _ in calls):
            calls.append((module, args))

    handles = [m.register_forward_pre_hook(record) for m in owners]
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def check_parameter_order_runs_input_to_output(backbone: Backbone) -> None:
    x = _images(backbone, _small_size(backbone))
    calls = _leaf_owners_in_call_order(backbone, x)
    _require(bool(calls), "forward calls no module that owns parameters")
    stem, stem_args = calls[0]
    last, _ = calls[-1]
    _require(
        bool(stem_args) and tuple(stem_args[0].shape) == tuple(x.shape),
        f"the first parameterised layer called ({stem}) does not receive the image",
    )
    ordered = backbone.ordered_parameters()
    _require(bool(ordered), "ordered_parameters() is empty")
    first_name, first = ordered[0]
    last_name, final = ordered[-1]
    _require(
        any(first is p for p in stem.parameters()),
        f"ordered_parameters() starts with {first_name}, not in the input stem ({stem})",
    )
    _require(
        any(final is p for p in last.parameters()),
        f"ordered_parameters() ends with {last_name}, not in the last layer called ({last})",
    )


def check_preprocessing_is_valid(backbone: Backbone) -> None:
    pre = backbone.preprocessing
    _require(isinstance(pre, Preprocessing), f"preprocessing is a {type(pre).__name__}")
    _require(len(pre.mean) == 3 and len(pre.std) == 3, "mean and std need 3 values (RGB)")
    _require(
        pre.resize_size >= max(pre.input_size),
        f"resize size {pre.resize_size} is smaller than the input size {pre.input_size}",
    )
    _require(Preprocessing.from_json(pre.to_json()) == pre, "preprocessing does not survive JSON")


def check_spec_rebuilds_the_same_architecture(backbone: Backbone) -> None:
    spec = backbone.spec()
    try:
        json.dumps(spec)  # travels inside checkpoints and ONNX metadata: plain data only
    except TypeError as err:
        raise _Clause(f"spec() is not plain JSON data: {err}") from err
    module_name, _, class_name = spec["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise _Clause(f"spec() class_path {spec['class_path']!r} does not import: {err}") from err
    rebuilt = cls(**spec["init_args"])
    _require(type(rebuilt) is type(backbone), f"spec() rebuilds a {type(rebuilt).__name__}")
    shapes = [(n, tuple(p.shape)) for n, p in backbone.named_parameters()]
    rebuilt_shapes = [(n, tuple(p.shape)) for n, p in rebuilt.named_parameters()]
    _require(rebuilt_shapes == shapes, "spec() rebuilds other parameter names or shapes")
    _require(rebuilt.num_features == backbone.num_features, "spec() rebuilds other num_features")
    _require(rebuilt.preprocessing == backbone.preprocessing, "spec() rebuilds other preprocessing")
    _require(rebuilt.spec() == spec, "the rebuilt backbone's spec() differs")


#: Clause name -> check; each raises AssertionError with the reason.
BACKBONE_CHECKS: dict[str, Callable[[Backbone], None]] = {
    "forward returns pooled features": check_forward_returns_pooled_features,
    "backward reaches every parameter": check_backward_reaches_every_parameter,
    "ordered_parameters covers each parameter once": (check_ordered_parameters_cover_each_once),
    "ordered_parameters runs from input to output": check_parameter_order_runs_input_to_output,
    "preprocessing is valid": check_preprocessing_is_valid,
    "spec rebuilds the same architecture": check_spec_rebuilds_the_same_architecture,
}


def check_backbone(backbone_class: type[Backbone]) -> None:
    """Check that a backbone class follows the contract of :class:`Backbone`.

    Builds ``backbone_class.small_example()`` (seeded) and runs every clause of
    :data:`BACKBONE_CHECKS` on it.

    Raises:
        BackboneContractError: one line per failing clause, naming the class.
    """
    name = getattr(backbone_class, "__qualname__", repr(backbone_class))
    if not (isinstance(backbone_class, type) and issubclass(backbone_class, Backbone)):
        raise BackboneContractError(
            f"{name} is not a subclass of moths_framework.model.backbone.Backbone"
        )
    torch.manual_seed(0)
    try:
        backbone = backbone_class.small_example()
    except Exception as err:  # any failure here is the plugin's
        raise BackboneContractError(
            f"{name}.small_example() failed: {type(err).__name__}: {err}"
        ) from err
    if type(backbone) is not backbone_class:
        raise BackboneContractError(
            f"{name}.small_example() returned a {type(backbone).__name__}, not a {name}"
        )
    failures = []
    for clause, check in BACKBONE_CHECKS.items():
        try:
            check(backbone)
        except Exception as err:  # a clause fails by assertion or by crashing
            reason = str(err) if isinstance(err, AssertionError) else f"{type(err).__name__}: {err}"
            failures.append(f"  - {clause}: {reason}")
    if failures:
        raise BackboneContractError(
            f"{name} breaks {len(failures)} of {len(BACKBONE_CHECKS)} backbone contract "
            "clauses:\n" + "\n".join(failures)
        )


def _few(names: Sequence[str], n: int = 5) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _run_clauses(what: str, clauses: dict[str, Callable[[], None]]) -> None:
    failures = []
    for clause, check in clauses.items():
        try:
            check()
        except Exception as err:  # a clause fails by assertion or by crashing
            reason = str(err) if isinstance(err, AssertionError) else f"{type(err).__name__}: {err}"
            failures.append(f"  - {clause}: {reason}")
    if failures:
        raise ContractError(
            f"{what} breaks {len(failures)} of {len(clauses)} contract clauses:\n"
            + "\n".join(failures)
        )


def check_data_source(source: Any) -> None:
    """Check a data source instance: ``Sample`` objects, in the same order on every call.

    Raises:
        ContractError: one line per failing clause.
    """
    from moths_framework.data.sources import DataSource, Sample

    def is_a_data_source() -> None:
        _require(isinstance(source, DataSource), f"{type(source).__name__} is not a DataSource")

    def lists_samples() -> None:
        samples = source.samples()
        _require(isinstance(samples, list), f"samples() returned {type(samples).__name__}")
        wrong = [s for s in samples if not isinstance(s, Sample)]
        _require(not wrong, f"samples() holds {len(wrong)} items that are not Sample")
        blank = [s for s in samples if not str(s.species).strip()]
        _require(not blank, f"{len(blank)} samples have an empty species name")

    def is_deterministic() -> None:
        _require(source.samples() == source.samples(), "two samples() calls differ")

    _run_clauses(
        type(source).__name__,
        {
            "is a DataSource": is_a_data_source,
            "samples() lists Sample objects": lists_samples,
            "samples() is deterministic": is_deterministic,
        },
    )


def check_hierarchy_source(source: Any) -> None:
    """Check a label hierarchy source instance: ``read()`` gives species-first ranks
    and every species has one name per other rank.

    Raises:
        ContractError: one line per failing clause.
    """
    from moths_framework.hierarchy import HierarchySource, HierarchyTable

    def is_a_hierarchy_source() -> None:
        _require(
            isinstance(source, HierarchySource), f"{type(source).__name__} is not a HierarchySource"
        )

    def reads_a_table() -> None:
        table = source.read()
        _require(isinstance(table, HierarchyTable), f"read() returned {type(table).__name__}")
        _require(table.ranks[:1] == ("species",), f"ranks {table.ranks} do not start with species")
        _require(bool(table.ancestors), "read() lists no species")
        width = len(table.ranks) - 1
        wrong = [s for s, a in table.ancestors.items() if len(a) != width]
        _require(not wrong, f"species without one name per rank {table.ranks[1:]}: {_few(wrong)}")

    _run_clauses(
        type(source).__name__,
        {"is a HierarchySource": is_a_hierarchy_source, "read() gives a table": reads_a_table},
    )


def check_unfreeze_policy(policy: Any, epochs: int = 30) -> None:
    """Check an unfreeze policy instance: ``fraction(epoch)`` lies in [0, 1] and never
    decreases over the first ``epochs`` epochs.

    Raises:
        ContractError: one line per failing clause.
    """
    from moths_framework.finetuning import UnfreezePolicy

    def is_a_policy() -> None:
        _require(isinstance(policy, UnfreezePolicy), f"{type(policy).__name__} is not one")

    def fractions_are_valid() -> None:
        values = [float(policy.fraction(e)) for e in range(epochs)]
        bad = [e for e, v in enumerate(values) if not 0.0 <= v <= 1.0]
        _require(not bad, f"fraction(epoch) outside [0, 1] at epochs {bad[:5]}")
        down = [e for e in range(1, epochs) if values[e] < values[e - 1]]
        _require(not down, f"fraction(epoch) decreases at epochs {down[:5]}")

    _run_clauses(
        type(policy).__name__,
        {"is an UnfreezePolicy": is_a_policy, "fraction(epoch) is valid": fractions_are_valid},
    )
