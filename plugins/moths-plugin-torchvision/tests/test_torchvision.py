"""The contract every backbones plugin must meet (moths_framework.testing)."""

from moths_plugin_torchvision import TorchvisionBackbone

from moths_framework import plugins
from moths_framework.testing import check_backbone


def test_registered_under_its_entry_point():
    assert plugins.load("backbones", "torchvision") is TorchvisionBackbone


def test_follows_the_contract():
    check_backbone(TorchvisionBackbone)
