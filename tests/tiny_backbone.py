"""A tiny backbone for fast tests of the training machinery (not a plugin)."""

from __future__ import annotations

import torch
from torch import nn

from moths_framework.model.backbone import Backbone
from moths_framework.preprocessing import Preprocessing


class TinyCNN(Backbone):
    """Three conv blocks → global average pool. Parameters are registered input to output."""

    def __init__(self, width: int = 8, pretrained: bool | str = False) -> None:
        super().__init__()
        self.width = width
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip

    @property
    def num_features(self) -> int:
        return 4 * self.width

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(input_size=(32, 32), crop_pct=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
