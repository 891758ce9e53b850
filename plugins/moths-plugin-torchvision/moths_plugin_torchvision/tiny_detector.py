"""``fasterrcnn_tiny``: torchvision's Faster R-CNN, small enough to commit and to train on a CPU.

The same parts as ``fasterrcnn_mobilenet_v3_large_fpn`` (a MobileNetV3 with an FPN,
a region proposal network, a two-layer box head), each narrowed: MobileNetV3-Small
at half width, a 64-channel FPN, a 128-wide box head, 150 proposals a frame (128
sampled for the box head's loss in training).
About 0.8 M parameters (3.2 MB), against 19 M: for demonstrations, tests and
easy frames (moths on a plain sheet), trained from random weights; there are no
pretrained weights for it.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

__all__ = ["fasterrcnn_tiny"]

FPN_CHANNELS = 64
BOX_HEAD_WIDTH = 128
PROPOSALS = 150  # per frame, before and after the proposals' NMS (the 320 model's)
# Proposals a training frame samples for the box head's loss (torchvision's default 512
# spends half a CPU step in RoIAlign's backward and learns no faster on a few moths a frame).
BOX_SAMPLES = 128
# One size per feature map (two from the backbone, one pooled), three shapes each.
ANCHOR_SIZES = ((16, 32, 64), (32, 64, 128), (64, 128, 256))
ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * 3


def fasterrcnn_tiny(*, num_classes: int, **kwargs: Any) -> FasterRCNN:
    """A small Faster R-CNN for ``num_classes`` classes (background included), random weights.

    ``kwargs`` go to :class:`torchvision.models.detection.FasterRCNN` (``min_size``,
    ``max_size``, ``image_mean``, ``box_score_thresh`` ...), as torchvision's builders pass them.
    """
    features = mobilenet_v3_small(weights=None, width_mult=0.5).features
    # The outputs of the last two stages (where the resolution halves next), as
    # torchvision's MobileNet FPN extractor takes them.
    stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    stages.append(len(features) - 1)
    returned = stages[-2:]
    backbone = BackboneWithFPN(
        features,
        return_layers={str(index): str(k) for k, index in enumerate(returned)},
        in_channels_list=[_out_channels(features[index]) for index in returned],
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    settings: dict[str, Any] = {
        "rpn_pre_nms_top_n_train": PROPOSALS * 4,
        "rpn_post_nms_top_n_train": PROPOSALS * 4,
        "rpn_pre_nms_top_n_test": PROPOSALS,
        "rpn_post_nms_top_n_test": PROPOSALS,
        "box_batch_size_per_image": BOX_SAMPLES,
        **kwargs,
    }
    return FasterRCNN(
        backbone,
        rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS),
        box_roi_pool=MultiScaleRoIAlign(["0", "1"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, BOX_HEAD_WIDTH),
        box_predictor=FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes),
        **settings,
    )


def _out_channels(block: nn.Module) -> int:
    """The channels a MobileNetV3 stage puts out (its ``out_channels``, or its last conv's)."""
    if hasattr(block, "out_channels"):
        return int(block.out_channels)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)
