"""TorchvisionDetector: the detector contract for each supported model, and its weights."""

import pytest
import torch
from moths_plugin_torchvision import TorchvisionDetector
from moths_plugin_torchvision.detector import MODELS
from torchvision.models import _api as torchvision_weights
from torchvision.ops.misc import FrozenBatchNorm2d

from moths_framework import plugins
from moths_framework.model.detector import DetectorError
from moths_framework.testing import check_detector

SMALL = {"min_side": 128, "max_side": 160}  # small frames: the check is about the contract


def test_registered_under_its_entry_point():
    assert plugins.load("detectors", "torchvision") is TorchvisionDetector


def test_follows_the_contract():
    check_detector(TorchvisionDetector)  # small_example: the 320 model on small frames


@pytest.mark.parametrize(
    "name",
    [
        "fasterrcnn_mobilenet_v3_large_fpn",  # AMI's
        "ssdlite320_mobilenet_v3_large",
        "fasterrcnn_tiny",
        pytest.param("fasterrcnn_resnet50_fpn", marks=pytest.mark.slow),  # 20-60 s each
        pytest.param("fasterrcnn_resnet50_fpn_v2", marks=pytest.mark.slow),
    ],
)
def test_each_model_follows_the_contract(name):
    check_detector(TorchvisionDetector, name=name, **({} if name.startswith("ssd") else SMALL))


def test_every_model_is_checked():
    # a model added to MODELS needs a line above (the 320 one is the small example's)
    checked = {"fasterrcnn_mobilenet_v3_large_fpn", "ssdlite320_mobilenet_v3_large",
               "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
               "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_tiny"}  # fmt: skip
    assert set(MODELS) == checked


def test_each_model_says_how_it_sees_a_frame():
    assert TorchvisionDetector().preprocessing.min_side == 800  # AMI's model, as torchvision
    assert TorchvisionDetector().preprocessing.max_side == 1333
    ssd = TorchvisionDetector("ssdlite320_mobilenet_v3_large").preprocessing
    assert (ssd.fixed_size, ssd.mean) == ((320, 320), (0.5, 0.5, 0.5))
    with pytest.raises(DetectorError, match="fixed 320 px: no min/max_side"):
        TorchvisionDetector("ssdlite320_mobilenet_v3_large", min_side=200)
    with pytest.raises(DetectorError, match="did you mean fasterrcnn_resnet50_fpn"):
        TorchvisionDetector("fasterrcnn_resnet50")
    with pytest.raises(DetectorError, match="num_classes must be a positive integer"):
        TorchvisionDetector(**SMALL).build(0)


def _coco_like(name):
    """A state dict shaped like torchvision's COCO file of ``name`` (91 classes)."""
    sizes = {} if name.startswith("ssd") else SMALL
    return TorchvisionDetector(name, **sizes).build(90).state_dict()


def test_a_local_weights_file_loads_all_but_the_class_layers(tmp_path):
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    coco = {k: v for k, v in _coco_like(name).items() if "num_batches_tracked" not in k}
    torch.save({"model": coco}, tmp_path / "coco.pth")  # as training scripts save it
    detector = TorchvisionDetector(name, pretrained_file=str(tmp_path / "coco.pth"), **SMALL)
    model = detector.build(1)
    state = model.state_dict()
    for key, value in coco.items():
        if key.startswith("roi_heads.box_predictor."):
            assert state[key].shape != value.shape  # new: 1 class and the background
        else:
            assert torch.equal(state[key], value), key
    # torchvision freezes BatchNorm under loaded weights; the spec says so, loads no file,
    # and rebuilds the same layers
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    spec = detector.spec()["init_args"]
    assert (spec["pretrained_file"], spec["frozen_batchnorm"]) == (None, True)
    assert TorchvisionDetector(**spec).build(1).state_dict().keys() == state.keys()


def test_a_weights_file_of_another_model_is_refused(tmp_path):
    torch.save(_coco_like("ssdlite320_mobilenet_v3_large"), tmp_path / "ssd.pth")
    with pytest.raises(DetectorError, match="does not fit torchvision detector"):
        TorchvisionDetector(pretrained_file=str(tmp_path / "ssd.pth"), **SMALL).build(1)
    with pytest.raises(DetectorError, match="not found"):
        TorchvisionDetector(pretrained_file=str(tmp_path / "none.pth"))


def test_pretrained_loads_torchvisions_coco_weights(monkeypatch):
    name = "ssdlite320_mobilenet_v3_large"
    coco = _coco_like(name)
    asked = []

    def get_state_dict(weights, *args, **kwargs):  # what torchvision downloads, offline
        asked.append(str(weights))
        return coco

    monkeypatch.setattr(torchvision_weights.WeightsEnum, "get_state_dict", get_state_dict)
    model = TorchvisionDetector(name, pretrained=True).build(2)
    assert asked == ["SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"]
    state = model.state_dict()
    assert torch.equal(
        state["backbone.features.0.0.0.weight"], coco["backbone.features.0.0.0.weight"]
    )
    head = "head.classification_head.module_list.0.1.weight"
    assert state[head].shape[0] == 6 * 3 and coco[head].shape[0] == 6 * 91  # anchors x classes


def test_the_tiny_model_is_small_and_has_no_pretrained_weights():
    model = TorchvisionDetector("fasterrcnn_tiny").build(1)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000  # small enough to commit
    with pytest.raises(DetectorError, match="no pretrained weights"):
        TorchvisionDetector("fasterrcnn_tiny", pretrained=True)
