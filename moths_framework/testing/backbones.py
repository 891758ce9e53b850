"""The backbone contract: every clause of :class:`~moths_framework.model.backbone.Backbone`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from moths_framework.messages import first_few
from moths_framework.model.backbone import Backbone
from moths_framework.preprocessing import Preprocessing
from moths_framework.testing.contract import (
    ContractError,
    build_plugin,
    rebuilt_from_spec,
    require,
    run_clauses,
)

__all__ = ["BACKBONE_CHECKS", "BackboneContractError", "check_backbone"]


class BackboneContractError(ContractError):
    """A backbone breaks one or more clauses of the contract; one line per clause."""


_BATCH = 2


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
    require(isinstance(features, torch.Tensor), f"forward returned {type(features).__name__}")
    expected = (_BATCH, backbone.num_features)
    require(
        tuple(features.shape) == expected,
        f"forward returned shape {tuple(features.shape)}, expected (batch, num_features) = "
        f"{expected}",
    )
    require(bool(torch.isfinite(features).all()), "forward returned NaN or infinite values")


def check_backward_reaches_every_parameter(backbone: Backbone) -> None:
    x = _images(backbone, _small_size(backbone))
    backbone.train()  # a training-mode forward must also return one tensor (no aux heads)
    backbone.zero_grad(set_to_none=True)
    out = backbone(x)
    require(isinstance(out, torch.Tensor), f"training-mode forward returned {type(out).__name__}")
    out.sum().backward()
    missing = [n for n, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    backbone.zero_grad(set_to_none=True)
    require(not missing, f"parameters get no gradient (unused by forward?): {first_few(missing)}")


def check_ordered_parameters_cover_each_once(backbone: Backbone) -> None:
    ordered = backbone.ordered_parameters()
    names = [name for name, _ in ordered]
    registered = dict(backbone.named_parameters())
    twice = sorted({n for n in names if names.count(n) > 1})
    require(not twice, f"ordered_parameters() lists parameters twice: {first_few(twice)}")
    left_out = [n for n in registered if n not in names]
    require(not left_out, f"ordered_parameters() leaves out {first_few(left_out)}")
    unknown = [n for n in names if n not in registered]
    require(not unknown, f"ordered_parameters() names unknown parameters {first_few(unknown)}")
    wrong = [name for name, p in ordered if registered[name] is not p]
    require(not wrong, f"ordered_parameters() pairs names with other tensors: {first_few(wrong)}")


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
    require(bool(calls), "forward calls no module that owns parameters")
    stem, stem_args = calls[0]
    last, _ = calls[-1]
    require(
        bool(stem_args) and tuple(stem_args[0].shape) == tuple(x.shape),
        f"the first parameterised layer called ({stem}) does not receive the image",
    )
    ordered = backbone.ordered_parameters()
    require(bool(ordered), "ordered_parameters() is empty")
    first_name, first = ordered[0]
    last_name, final = ordered[-1]
    require(
        any(first is p for p in stem.parameters()),
        f"ordered_parameters() starts with {first_name}, not in the input stem ({stem})",
    )
    require(
        any(final is p for p in last.parameters()),
        f"ordered_parameters() ends with {last_name}, not in the last layer called ({last})",
    )


def check_preprocessing_is_valid(backbone: Backbone) -> None:
    pre = backbone.preprocessing
    require(isinstance(pre, Preprocessing), f"preprocessing is a {type(pre).__name__}")
    require(len(pre.mean) == 3 and len(pre.std) == 3, "mean and std need 3 values (RGB)")
    require(
        pre.resize_size >= max(pre.input_size),
        f"resize size {pre.resize_size} is smaller than the input size {pre.input_size}",
    )
    require(Preprocessing.from_json(pre.to_json()) == pre, "preprocessing does not survive JSON")


def check_spec_rebuilds_the_same_architecture(backbone: Backbone) -> None:
    rebuilt, spec = rebuilt_from_spec(backbone)
    shapes = [(n, tuple(p.shape)) for n, p in backbone.named_parameters()]
    rebuilt_shapes = [(n, tuple(p.shape)) for n, p in rebuilt.named_parameters()]
    require(rebuilt_shapes == shapes, "spec() rebuilds other parameter names or shapes")
    require(rebuilt.num_features == backbone.num_features, "spec() rebuilds other num_features")
    require(rebuilt.preprocessing == backbone.preprocessing, "spec() rebuilds other preprocessing")
    require(rebuilt.spec() == spec, "the rebuilt backbone's spec() differs")


#: Clause name -> check; each raises AssertionError with the reason.
BACKBONE_CHECKS: dict[str, Callable[[Backbone], None]] = {
    "forward returns pooled features": check_forward_returns_pooled_features,
    "backward reaches every parameter": check_backward_reaches_every_parameter,
    "ordered_parameters covers each parameter once": (check_ordered_parameters_cover_each_once),
    "ordered_parameters runs from input to output": check_parameter_order_runs_input_to_output,
    "preprocessing is valid": check_preprocessing_is_valid,
    "spec rebuilds the same architecture": check_spec_rebuilds_the_same_architecture,
}


def check_backbone(plugin: Any, /, **init_args: Any) -> None:
    """Check that a backbone follows the contract of :class:`Backbone`.

    Seeds torch with 0, builds the backbone and runs every clause of
    :data:`BACKBONE_CHECKS` on it.

    Args:
        plugin: a ``Backbone`` subclass (built by ``small_example()`` when no
            ``init_args`` are given, else ``plugin(**init_args)``), a factory
            function, or an instance.
        **init_args: the arguments to build it with.

    Raises:
        BackboneContractError: it cannot be built, or one line per failing clause.
    """
    torch.manual_seed(0)
    backbone = build_plugin(plugin, "backbones", init_args, BackboneContractError)
    run_clauses(backbone, "backbone", BACKBONE_CHECKS, BackboneContractError)
