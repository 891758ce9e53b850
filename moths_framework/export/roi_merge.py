"""A faster ONNX graph for torchvision's multi-level RoI pooling, used while a detector is traced.

When traced, ``torchvision.ops.MultiScaleRoIAlign`` pools the boxes of each
feature level separately and merges the results with one ``ScatterElements``
per level over a zero tensor of every box's whole ``[C, 7, 7]`` output (index
tensors expanded to that size). On ONNX Runtime's CPU that merge took about
40% of a ``fasterrcnn_mobilenet_v3_large_fpn`` frame (1000 proposals: 12.5 M
scattered values a level, with the ``Expand`` and ``ConstantOfShape`` feeding
it), more than the box head's matrix products. Here the levels' results are
concatenated and put back in box order with one ``Gather`` of whole rows; the
inverse order is a scatter of one number per box. Same values, the parity check
of the export holds it to PyTorch's boxes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor
from torchvision.ops import poolers

__all__ = ["gathered_roi_levels", "merge_levels_by_gather"]


def merge_levels_by_gather(levels: Tensor, unmerged_results: list[Tensor]) -> Tensor:
    """Each box's pooled features, in box order: ``unmerged_results[k]`` holds the boxes
    with ``levels == k``, in their order (what torchvision's ``_onnx_merge_levels`` takes)."""
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged_results))])
    position = torch.arange(order.size(0), dtype=order.dtype, device=order.device)
    inverse = torch.zeros_like(order).scatter(0, order, position)
    return torch.cat(unmerged_results)[inverse]


@contextlib.contextmanager
def gathered_roi_levels() -> Iterator[None]:
    """While inside, a traced ``MultiScaleRoIAlign`` merges its levels with
    :func:`merge_levels_by_gather`."""
    original = poolers._onnx_merge_levels
    poolers._onnx_merge_levels = merge_levels_by_gather
    try:
        yield
    finally:
        poolers._onnx_merge_levels = original
