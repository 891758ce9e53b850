"""One linear classification head per rank on top of a backbone."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from moths_framework.model.backbone import Backbone

__all__ = ["MultiHeadClassifier"]


class MultiHeadClassifier(nn.Module):
    """Backbone features → logits for every rank of the label hierarchy.

    Args:
        backbone: the feature extractor.
        num_classes: classes per rank (``Other`` included), in head order.
        dropout: dropout on the features before the heads.
    """

    def __init__(self, backbone: Backbone, num_classes: Mapping[str, int], dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.ranks = tuple(num_classes)
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict(
            {rank: nn.Linear(backbone.num_features, n) for rank, n in num_classes.items()}
        )

    def forward_with_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Logits per rank (head order) and the backbone features."""
        features = self.backbone(x)
        dropped = self.dropout(features)
        return [self.heads[rank](dropped) for rank in self.ranks], features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits per rank, in head order."""
        return self.forward_with_features(x)[0]
