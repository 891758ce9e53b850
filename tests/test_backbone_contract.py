"""One contract for every installed backbone plugin (timm's test_models.py idea).

Each plugin's ``small_example()`` must: return pooled features of width
``num_features``; pass gradients to every parameter; list its parameters from
the input stem to the output end; describe a valid preprocessing; and rebuild
the same architecture from ``spec()`` by a plain import. A plugin is tested
the moment it is installed.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
import torch
from torch import nn

from moths_framework import plugins
from moths_framework.model.backbone import Backbone
from moths_framework.preprocessing import Preprocessing

PLUGINS = sorted(plugins.available("backbones"))
BATCH = 2


def test_a_backbone_plugin_is_installed():
    # The project always installs both; without them every test below would skip silently.
    assert PLUGINS, (
        "no backbone plugin is installed in moths_framework.backbones; run "
        "`pip install -e plugins/moths-plugin-timm -e plugins/moths-plugin-torchvision`"
    )


@pytest.fixture(scope="module", params=PLUGINS)
def backbone_class(request) -> type:
    return plugins.load("backbones", request.param)


@pytest.fixture(scope="module")
def backbone(backbone_class) -> Backbone:
    torch.manual_seed(0)
    return backbone_class.small_example()


def _images(backbone: Backbone, size: tuple[int, int] | None = None) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(BATCH, 3, *(size or backbone.preprocessing.input_size))


@pytest.fixture(scope="module")
def small_size(backbone) -> tuple[int, int]:
    """64 px when the backbone accepts it (CNNs), else its own input size (ViTs): faster tests."""
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(_images(backbone, (64, 64)))
    except Exception:  # fixed-size models assert on the input shape in many ways
        return backbone.preprocessing.input_size
    return (64, 64)


def test_is_a_backbone(backbone_class, backbone):
    assert isinstance(backbone_class, type) and issubclass(backbone_class, Backbone)
    assert type(backbone) is backbone_class


def test_forward_returns_pooled_features(backbone):
    backbone.eval()
    with torch.no_grad():
        features = backbone(_images(backbone))
    assert isinstance(features, torch.Tensor)
    assert features.shape == (BATCH, backbone.num_features)
    assert torch.isfinite(features).all()


def test_backward_reaches_every_parameter(backbone, small_size):
    backbone.train()  # training-mode forward must also return one tensor (no aux heads)
    backbone.zero_grad(set_to_none=True)
    backbone(_images(backbone, small_size)).sum().backward()
    missing = [n for n, p in backbone.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (unused by forward?): {missing[:10]}"
    backbone.zero_grad(set_to_none=True)


def test_ordered_parameters_cover_named_parameters_once(backbone):
    ordered = backbone.ordered_parameters()
    names = [name for name, _ in ordered]
    registered = dict(backbone.named_parameters())
    assert len(names) == len(set(names)), "a parameter is listed twice"
    assert set(names) == set(registered)
    assert all(registered[name] is p for name, p in ordered)


def _leaf_owners_in_call_order(backbone: Backbone, x: torch.Tensor) -> list[tuple[nn.Module, Any]]:
    """Modules that own parameters (and have no parameterised children), in first-call order."""
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
        for h in handles:
            h.remove()
    return calls


def test_ordered_parameters_run_from_input_stem_to_output_end(backbone, small_size):
    x = _images(backbone, small_size)
    calls = _leaf_owners_in_call_order(backbone, x)
    stem, stem_args = calls[0]
    last, _ = calls[-1]
    # The stem is the first parameterised layer the forward pass calls, and it sees the image.
    assert stem_args and stem_args[0].shape == x.shape
    ordered = backbone.ordered_parameters()
    first_param, last_param = ordered[0][1], ordered[-1][1]
    assert any(first_param is p for p in stem.parameters()), (
        f"first of ordered_parameters() is {ordered[0][0]}, not in the stem layer {stem}"
    )
    assert any(last_param is p for p in last.parameters()), (
        f"last of ordered_parameters() is {ordered[-1][0]}, not in the last layer called ({last})"
    )


def test_preprocessing_defaults_are_valid(backbone):
    pre = backbone.preprocessing
    assert isinstance(pre, Preprocessing)
    assert len(pre.mean) == 3 and len(pre.std) == 3
    assert pre.resize_size >= max(pre.input_size)
    assert Preprocessing.from_json(pre.to_json()) == pre


def test_spec_rebuilds_the_same_architecture(backbone):
    spec = backbone.spec()
    json.dumps(spec)  # travels inside checkpoints and ONNX metadata: plain data only
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    rebuilt = cls(**spec["init_args"])
    assert type(rebuilt) is type(backbone)
    shapes = [(n, tuple(p.shape)) for n, p in backbone.named_parameters()]
    assert [(n, tuple(p.shape)) for n, p in rebuilt.named_parameters()] == shapes
    assert rebuilt.num_features == backbone.num_features
    assert rebuilt.preprocessing == backbone.preprocessing
    assert rebuilt.spec() == spec
