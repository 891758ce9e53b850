"""moths-plugin-timm specifics: names, local weights files, preprocessing. No downloads."""

from __future__ import annotations

import pytest
import timm
import torch
from moths_plugin_timm import TimmBackbone
from safetensors.torch import save_file

from moths_framework.model.backbone import BackboneError
from moths_framework.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

TINY = "test_resnet"  # classifier "fc", 0.4 M parameters


def test_unknown_name_suggests_close_matches():
    with pytest.raises(BackboneError, match=r"model 'resnet181'; did you mean .*resnet18"):
        TimmBackbone("resnet181")


def test_unknown_name_without_close_match_points_to_list_models():
    with pytest.raises(BackboneError, match=r"'qqqqzzzz'; see timm.list_models"):
        TimmBackbone("qqqqzzzz")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads(tmp_path, suffix):
    torch.manual_seed(3)
    source = timm.create_model(TINY)  # a full model, classifier included, as on the hub
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    backbone = TimmBackbone(TINY, pretrained=str(path))
    assert torch.equal(backbone.model.conv1[0].weight, source.conv1[0].weight)
    assert torch.equal(backbone.model.layer4[0].bn2.running_var, source.layer4[0].bn2.running_var)
    assert backbone.spec()["init_args"]["pretrained"] is False  # weights travel in checkpoints


def test_headless_weights_file_loads(tmp_path):
    source = timm.create_model(TINY, num_classes=0)
    path = tmp_path / "headless.pth"
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone(TINY, pretrained=str(path))
    assert torch.equal(backbone.model.conv1[0].weight, source.conv1[0].weight)


def test_weights_of_another_model_are_rejected_naming_the_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet").state_dict(), path)
    with pytest.raises(BackboneError, match=rf"{path}.*does not fit.*missing keys \[conv1"):
        TimmBackbone(TINY, pretrained=str(path))


def test_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(BackboneError, match=rf"weights file '{path}' .* not found"):
        TimmBackbone(TINY, pretrained=str(path))


def test_download_failure_says_what_to_do_offline(monkeypatch):
    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("network is unreachable")
        raise AssertionError("only the download path is under test")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(BackboneError, match=r"network is unreachable.*local weights file"):
        TimmBackbone(TINY, pretrained=True)


def test_preprocessing_follows_the_pretrained_cfg():
    # timm's resnet18 default tag is a1_in1k: 224 px, crop 0.95, bicubic.
    assert TimmBackbone("resnet18").preprocessing == Preprocessing(
        input_size=(224, 224),
        crop_pct=0.95,
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    tv = TimmBackbone("resnet18.tv_in1k").preprocessing  # a tag selects its own config
    assert (tv.crop_pct, tv.interpolation, tv.resize_size) == (0.875, "bilinear", 256)
    assert TimmBackbone(TINY).preprocessing.mean == (0.5, 0.5, 0.5)


def test_num_features_is_the_width_forward_returns():
    # MobileNetV3 keeps a pre-logits conv with num_classes=0: 1024 wide, not num_features=288.
    backbone = TimmBackbone("mobilenetv3_small_050").eval()
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, backbone.num_features) == (1, 1024)


def test_drop_path_rate_reaches_the_model():
    backbone = TimmBackbone("test_efficientnet", drop_path_rate=0.2)
    rates = [m.drop_prob for m in backbone.modules() if hasattr(m, "drop_prob")]
    assert rates and max(rates) > 0


def test_drop_path_rate_on_a_model_without_stochastic_depth_is_an_error():
    with pytest.raises(BackboneError, match=r"'vgg11' has no stochastic depth"):
        TimmBackbone("vgg11", drop_path_rate=0.1)


def test_ordered_parameters_follow_data_flow_not_registration():
    # A ViT registers cls_token and pos_embed on its root, before patch_embed.
    backbone = TimmBackbone("test_vit")
    registered = [n for n, _ in backbone.named_parameters()]
    ordered = [n for n, _ in backbone.ordered_parameters()]
    assert registered[0] == "model.cls_token"
    assert ordered[:2] == ["model.patch_embed.proj.weight", "model.patch_embed.proj.bias"]
    assert ordered.index("model.cls_token") < ordered.index("model.blocks.0.norm1.weight")
    assert ordered[-2:] == ["model.norm.weight", "model.norm.bias"]


def test_ordered_parameters_include_frozen_ones_and_keep_train_mode():
    backbone = TimmBackbone(TINY).train()
    for p in backbone.parameters():
        p.requires_grad_(False)
    running_mean = backbone.model.conv1[1].running_mean.clone()
    assert len(backbone.ordered_parameters()) == len(list(backbone.parameters()))
    assert backbone.training and all(m.training for m in backbone.modules())
    assert torch.equal(backbone.model.conv1[1].running_mean, running_mean)
