"""The contract every backbones plugin must meet (moths_framework.testing)."""

import pytest
from moths_plugin_timm import TimmBackbone

from moths_framework import plugins
from moths_framework.testing import check_backbone


def test_registered_under_its_entry_point():
    assert plugins.load("backbones", "timm") is TimmBackbone


def test_follows_the_contract():
    check_backbone(TimmBackbone)


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])  # a CNN, a fixed-size ViT
def test_other_architectures_follow_the_contract(name):
    check_backbone(TimmBackbone, name=name, pretrained=False)
