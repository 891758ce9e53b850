"""One frame in, its boxes out: the detector as exported, and as PyTorch should run it.

torchvision's detection models resize a frame inside, computing the new size in
double precision when run eagerly and in float32 when traced for ONNX; where the
frame's longer (or shorter) side lands exactly on ``max_side`` (``min_side``), as
it does for most frames, the two often differ by a pixel, and so do all the boxes.
:class:`DetectionGraph` resizes the frame itself first, with float32 tensor
operations that run the same eagerly and in the exported graph, so the model's
own resize then keeps the size, and maps the boxes back to the frame. Export
traces it; the parity check runs it; so should anything that wants PyTorch to
give what ONNX Runtime gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.onnx import operators

from moths_framework.preprocessing import DetectorPreprocessing

__all__ = ["SIZE_NUDGE", "DetectionGraph"]

# Added before flooring the resized size: a side that lands on an integer within
# float32 rounding (the side that sets the scale always does) keeps that integer.
SIZE_NUDGE = 1e-3


class DetectionGraph(nn.Module):
    """A detection model for one frame: ``[1, 3, H, W]`` in [0, 1] → ``boxes`` ``[K, 4]``
    (the frame's pixels), ``scores`` ``[K]``, ``labels`` ``[K]`` (int64).

    Args:
        model: what :meth:`Detector.build` returned, in eval mode.
        preprocessing: its resize rule (:attr:`Detector.preprocessing`).
    """

    def __init__(self, model: nn.Module, preprocessing: DetectorPreprocessing) -> None:
        super().__init__()
        self.model = model
        self.preprocessing = preprocessing

    def model_size(self, shape: torch.Tensor) -> torch.Tensor:
        """The (height, width) the model sees, as int64, from the frame's float32 shape."""
        pre = self.preprocessing
        if pre.fixed_size is not None:
            return torch.tensor(pre.fixed_size, dtype=torch.int64)
        scale = torch.minimum(pre.min_side / shape.min(), pre.max_side / shape.max())
        return torch.floor(shape * scale + SIZE_NUDGE).to(torch.int64)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frame = images[0]
        shape = operators.shape_as_tensor(frame)[1:].to(torch.float32)
        size = self.model_size(shape)
        # Traced, the size stays a tensor (dynamic in the graph); eager, interpolate wants ints.
        dims = (size[0], size[1]) if torch.jit.is_tracing() else (int(size[0]), int(size[1]))
        resized = F.interpolate(frame[None], size=dims, mode="bilinear", align_corners=False)[0]
        detections = self.model([resized])[0]
        ratio = shape / size.to(torch.float32)  # (height, width) of a model pixel in the frame's
        boxes = detections["boxes"] * torch.stack([ratio[1], ratio[0], ratio[1], ratio[0]])
        return boxes, detections["scores"], detections["labels"]
