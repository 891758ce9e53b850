"""A tiny Faster R-CNN detector for fast tests of the detector machinery (not a plugin)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

from moths_framework.model.detector import Detector
from moths_framework.preprocessing import DetectorPreprocessing
from moths_framework.testing.detectors import spread_weights


class TinyDetector(Detector):
    """Three strided convolutions under torchvision's Faster R-CNN heads; small frames."""

    def __init__(
        self,
        width: int = 8,
        min_side: int = 128,
        max_side: int = 160,
        score_threshold: float = 0.5,
        nms_iou: float = 0.5,
        max_detections: int = 500,
    ) -> None:
        super().__init__(
            score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
        )
        self.width = width
        self._preprocessing = DetectorPreprocessing(min_side=min_side, max_side=max_side)

    @property
    def preprocessing(self) -> DetectorPreprocessing:
        return self._preprocessing

    @classmethod
    def small_example(cls) -> TinyDetector:
        return cls()

    def build(self, num_classes: int) -> nn.Module:
        w = self.width
        body = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        body.out_channels = w
        pre = self.preprocessing
        return FasterRCNN(
            body,
            num_classes=num_classes + 1,
            rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
            box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
            min_size=pre.min_side,
            max_size=pre.max_side,
            rpn_post_nms_top_n_test=200,
            box_score_thresh=self.score_threshold,
            box_nms_thresh=self.nms_iou,
            box_detections_per_img=self.max_detections,
        )


def frame(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A (3, height, width) frame in [0, 1]: a dim sheet with bright patches."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(3, height, width, generator=generator) * 0.3 + 0.1
    for k in range(3):
        y, x = (k + 1) * height // 5, (2 * k + 1) * width // 7
        pixels[:, y : y + height // 4, x : x + width // 5] = 0.6 + 0.1 * k
    return pixels


def trained_looking(model: nn.Module, frames: list[torch.Tensor]) -> nn.Module:
    """``model`` with weights that give each box its own score on ``frames``."""
    torch.manual_seed(0)
    return spread_weights(model, frames)
