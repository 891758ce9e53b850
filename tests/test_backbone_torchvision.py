"""moths-plugin-torchvision specifics: names, local weights files, preprocessing. No downloads."""

from __future__ import annotations

import pytest
import torch
from moths_plugin_torchvision import TorchvisionBackbone, torchvision_preprocessing
from moths_plugin_torchvision.backbone import classification_models
from torch import nn
from torchvision import models

from moths_framework.model.backbone import BackboneError
from moths_framework.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

TINY = "mobilenet_v3_small"


def _full_model_file(tmp_path, name: str = TINY, **kwargs) -> tuple[nn.Module, str]:
    """A random full model (classifier included) saved as torchvision ships weights."""
    torch.manual_seed(5)
    source = models.get_model(name, weights=None, **kwargs)
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    return source, str(path)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(BackboneError, match=r"'efficientnet_b8'; did you mean .*efficientnet_b7"):
        TorchvisionBackbone("efficientnet_b8")


def test_non_classification_models_are_rejected():
    with pytest.raises(BackboneError, match=r"unknown torchvision classification model 'fcn_"):
        TorchvisionBackbone("fcn_resnet50")


def test_model_without_linear_classifier_is_rejected():
    with pytest.raises(BackboneError, match=r"'squeezenet1_0' has no Linear classifier"):
        TorchvisionBackbone("squeezenet1_0")


def test_seed_backbone_efficientnet_b7():
    backbone = TorchvisionBackbone("efficientnet_b7")
    assert isinstance(backbone.model.classifier[1], nn.Identity)
    assert backbone.num_features == 2560
    assert backbone.preprocessing == Preprocessing(
        input_size=(600, 600),
        crop_pct=1.0,  # DEFAULT weights: crop 600 from a 600 resize
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def test_preprocessing_matches_every_default_weights_transform():
    # No model is built: crop and resize must survive the crop_pct round trip exactly.
    for name in classification_models():
        transform = models.get_model_weights(name).DEFAULT.transforms()
        pre = torchvision_preprocessing(name)
        assert pre.input_size == (transform.crop_size[0],) * 2, name
        assert pre.resize_size == transform.resize_size[0], name
        assert pre.interpolation == transform.interpolation.value, name
        assert pre.mean == tuple(transform.mean) and pre.std == tuple(transform.std), name


def test_preprocessing_falls_back_to_imagenet_at_224(monkeypatch):
    def no_weights(name):
        raise ValueError(f"no weights for {name}")

    monkeypatch.setattr(models, "get_model_weights", no_weights)
    assert torchvision_preprocessing("resnet18") == Preprocessing()


def test_local_weights_file_loads_dropping_the_classifier(tmp_path):
    source, path = _full_model_file(tmp_path)
    backbone = TorchvisionBackbone(TINY, pretrained=path)
    assert torch.equal(backbone.model.features[0][0].weight, source.features[0][0].weight)
    # The hidden classifier layer stays (its output is the feature vector); the last goes.
    assert torch.equal(backbone.model.classifier[0].weight, source.classifier[0].weight)
    assert isinstance(backbone.model.classifier[3], nn.Identity)
    assert backbone.spec()["init_args"]["pretrained"] is False  # weights travel in checkpoints


def test_fine_tuned_file_with_another_class_count_loads(tmp_path):
    source, path = _full_model_file(tmp_path, "resnet18", num_classes=7)
    backbone = TorchvisionBackbone("resnet18", pretrained=path)
    assert torch.equal(backbone.model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_file_without_num_batches_tracked_loads(tmp_path):
    # torchvision's oldest weights files (resnet18-f37072fd.pth) predate the buffer.
    source, path = _full_model_file(tmp_path, "resnet18")
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, path)
    backbone = TorchvisionBackbone("resnet18", pretrained=path)
    assert torch.equal(backbone.model.bn1.weight, source.bn1.weight)


def test_weights_of_another_model_are_rejected_naming_the_file(tmp_path):
    _, path = _full_model_file(tmp_path, "resnet18")
    with pytest.raises(BackboneError, match=rf"{path}.*does not fit .*'{TINY}'.*missing keys"):
        TorchvisionBackbone(TINY, pretrained=path)


def test_unreadable_weights_file_is_named(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(BackboneError, match=rf"cannot read weights file '{path}'"):
        TorchvisionBackbone(TINY, pretrained=str(path))


def test_missing_weights_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(BackboneError, match=rf"weights file '{path}' .* not found"):
        TorchvisionBackbone(TINY, pretrained=str(path))


def test_download_failure_says_what_to_do_offline(monkeypatch):
    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(BackboneError, match=r"network is unreachable.*local weights file"):
        TorchvisionBackbone(TINY, pretrained=True)


def test_vit_h_14_is_built_at_its_weights_size():
    # Its DEFAULT weights are 518 px; a 224 px model would fit neither them nor the preprocessing.
    with torch.device("meta"):  # 632 M parameters: shapes only
        backbone = TorchvisionBackbone("vit_h_14")
    assert backbone.model.image_size == backbone.preprocessing.input_size[0] == 518


def test_inception_trains_without_auxiliary_outputs():
    with torch.device("meta"):  # shapes only: training-mode forward must give one tensor
        backbone = TorchvisionBackbone("inception_v3").train()
        features = backbone(torch.empty(2, 3, 299, 299))
    assert isinstance(features, torch.Tensor) and features.shape == (2, 2048)
    assert not any("AuxLogits" in n for n, _ in backbone.named_parameters())
