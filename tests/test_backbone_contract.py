"""One contract for every installed backbone plugin (timm's test_models.py idea).

The contract itself is public, :func:`moths_framework.testing.check_backbone`, so a
third-party plugin runs the same checks on itself in one line. Every installed
backbone plugin is checked here the moment it is installed.
"""

from __future__ import annotations

import pytest
import torch
from tiny_backbone import TinyCNN
from torch import nn

from moths_framework import plugins
from moths_framework.testing import BACKBONE_CHECKS, BackboneContractError, check_backbone

PLUGINS = sorted(plugins.available("backbones"))


def test_a_backbone_plugin_is_installed():
    # The project always installs both; without them the contract test would skip silently.
    assert PLUGINS, (
        "no backbone plugin is installed in moths_framework.backbones; run "
        "`pip install -e plugins/moths-plugin-timm -e plugins/moths-plugin-torchvision`"
    )


@pytest.mark.parametrize("name", PLUGINS)
def test_every_installed_backbone_follows_the_contract(name):
    check_backbone(plugins.load("backbones", name))


class SmallTiny(TinyCNN):
    @classmethod
    def small_example(cls) -> SmallTiny:
        return cls(width=4)


def test_a_correct_backbone_passes():
    check_backbone(SmallTiny)


class Careless(SmallTiny):
    """Claims twice its features and keeps a layer forward never uses."""

    def __init__(self, width: int = 8, pretrained: bool | str = False) -> None:
        super().__init__(width, pretrained)
        self.unused = nn.Linear(2, 2)

    @property
    def num_features(self) -> int:
        return 8 * self.width


def test_each_failing_clause_gets_its_own_line():
    with pytest.raises(BackboneContractError) as err:
        check_backbone(Careless)
    message = str(err.value)
    assert message.startswith(f"Careless breaks 3 of {len(BACKBONE_CHECKS)} backbone contract")
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    assert "forward returns pooled features: forward returned shape (2, 16)" in lines[0]
    assert "(2, 32)" in lines[0]
    assert "backward reaches every parameter" in lines[1] and "unused.weight" in lines[1]
    assert "ordered_parameters runs from input to output" in lines[2]
    assert "ends with unused.bias" in lines[2]


def test_a_class_that_is_not_a_backbone_or_lacks_small_example_is_one_line():
    with pytest.raises(BackboneContractError, match="nn.Linear|not a subclass"):
        check_backbone(nn.Linear)
    with pytest.raises(BackboneContractError, match=r"TinyCNN.small_example\(\) failed"):
        check_backbone(TinyCNN)


def test_checks_leave_the_global_rng_alone_apart_from_the_documented_seed():
    torch.manual_seed(5)
    check_backbone(SmallTiny)  # seeds 0 for small_example, as documented
    assert torch.initial_seed() == 0
