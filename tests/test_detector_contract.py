"""The detectors plugin group: its row, discovery, and check_detector's clauses."""

from __future__ import annotations

import pytest
import torch
from helpers.tiny_detector import TinyDetector
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from moths_framework import plugins
from moths_framework.model.detector import Detector, DetectorError
from moths_framework.preprocessing import DetectorPreprocessing
from moths_framework.testing import DetectorContractError, check_detector, check_plugin


def test_detectors_are_the_fifth_plugin_group():
    row = plugins.plugin_group("moths_framework.detectors")
    assert (row.name, row.yaml_key) == ("detectors", "model.detector")
    assert row.base_class() is Detector
    assert row.contract_check() is check_detector
    found = plugins.available("detectors")["torchvision"]
    assert found.distribution == "moths-plugin-torchvision"
    assert found.class_path == "moths_plugin_torchvision.TorchvisionDetector"
    assert issubclass(plugins.load("detectors", "torchvision"), Detector)


def test_a_small_detector_passes_the_contract():
    check_plugin("detectors", TinyDetector)  # the group's check, found through its row


class ZeroBasedLabels(TinyDetector):
    """Labels counted from 0, the background's number."""

    def build(self, num_classes: int) -> nn.Module:
        model = super().build(num_classes)
        postprocess = model.transform.postprocess

        def shifted(result, image_sizes, original_sizes):
            result = postprocess(result, image_sizes, original_sizes)
            return [{**r, "labels": r["labels"] - 1} for r in result]

        model.transform.postprocess = shifted
        return model


class BoxesInModelPixels(TinyDetector):
    """The classic export bug: boxes left in the resized image's pixels."""

    def build(self, num_classes: int) -> nn.Module:
        model = super().build(num_classes)
        model.transform.postprocess = lambda result, image_sizes, original_sizes: result
        return model


def test_a_broken_detector_fails_with_one_line_naming_the_clause():
    with pytest.raises(DetectorContractError) as err:
        check_detector(ZeroBasedLabels)
    assert str(err.value).splitlines() == [
        "ZeroBasedLabels breaks 1 of 6 detector contract clauses:",
        "  - eval forward gives boxes in each frame, sorted scores, labels 1..N: "
        "labels [0] outside 1..3",
    ]
    with pytest.raises(DetectorContractError) as err:
        check_detector(BoxesInModelPixels, min_side=320, max_side=480)
    assert (
        "  - eval forward gives boxes in each frame, sorted scores, labels 1..N: "
        "boxes outside the 171x128 frame"
    ) in str(err.value)


class SaysOtherSizes(TinyDetector):
    def build(self, num_classes: int) -> nn.Module:
        model = super().build(num_classes)
        model.transform.min_size, model.transform.max_size = (96,), 200
        return model


class Unbuildable(TinyDetector):
    def build(self, num_classes: int) -> nn.Module:
        raise RuntimeError("no weights here")


def test_a_wrong_preprocessing_and_a_failed_build_are_named():
    with pytest.raises(
        DetectorContractError, match="resizes to min 96, max 200.* says min 128, max 160"
    ):
        check_detector(SaysOtherSizes)
    with pytest.raises(DetectorContractError, match=r"Unbuildable.build\(3\) failed: no weights"):
        check_detector(Unbuildable)
    with pytest.raises(DetectorContractError, match="not a subclass of .*model.detector.Detector"):
        check_detector(nn.Linear, in_features=1, out_features=1)


def test_bad_postprocess_settings_are_refused_when_built():
    with pytest.raises(DetectorError, match=r"score_threshold must be in \[0, 1\], got 1.5"):
        TinyDetector(score_threshold=1.5)
    with pytest.raises(DetectorError, match="max_detections must be at least 1"):
        TinyDetector(max_detections=0)


def test_the_spec_records_the_arguments_and_drops_weight_files():
    class Pretrained(TinyDetector):
        def __init__(self, pretrained: bool = False, pretrained_file: str | None = None) -> None:
            super().__init__(score_threshold=0.3)

    spec = Pretrained(pretrained=True, pretrained_file="coco.pth").spec()
    assert spec["init_args"] == {"pretrained": False, "pretrained_file": None}
    assert TinyDetector(width=4).spec() == {
        "class_path": "helpers.tiny_detector.TinyDetector",
        "init_args": {"width": 4, "min_side": 128, "max_side": 160, "score_threshold": 0.5,
                      "nms_iou": 0.5, "max_detections": 500},
    }  # fmt: skip


def test_the_resize_rule_is_torchvisions():
    pre = DetectorPreprocessing(min_side=128, max_side=160)
    transform = GeneralizedRCNNTransform(128, 160, list(pre.mean), list(pre.std))
    for h, w in [(128, 171), (200, 150), (97, 300), (1000, 1000)]:
        batch, _ = transform([torch.rand(3, h, w)])
        assert pre.model_size(h, w) == batch.image_sizes[0], (h, w)
    assert DetectorPreprocessing(fixed_size=(320, 320)).model_size(50, 900) == (320, 320)
    with pytest.raises(ValueError, match="need 0 < min_side <= max_side"):
        DetectorPreprocessing(min_side=900, max_side=800)
