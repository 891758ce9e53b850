"""The exported detector merges its RoI levels with a Gather: torchvision's values, without
its scatter over every box's whole pooled output (slow on ONNX Runtime's CPU)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from moths_plugin_torchvision import TorchvisionDetector
from torchvision.ops import poolers

from moths_framework.export.detector_onnx import export_detector_onnx
from moths_framework.export.roi_merge import gathered_roi_levels, merge_levels_by_gather
from moths_framework.testing.detectors import spread_weights


@pytest.mark.parametrize("levels", [[2, 0, 1, 0, 3, 2, 2, 1], [1, 1, 1, 3], []])
def test_the_merge_equals_torchvisions(levels: list[int]) -> None:
    generator = torch.Generator().manual_seed(len(levels))
    levels_t = torch.tensor(levels, dtype=torch.int64)
    unmerged = [torch.randn(int((levels_t == k).sum()), 5, 3, 3, generator=generator)
                for k in range(4)]  # fmt: skip
    expected = poolers._onnx_merge_levels(levels_t, unmerged)  # the oracle: torchvision's own
    assert torch.equal(merge_levels_by_gather(levels_t, unmerged), expected)


def test_only_while_tracing_an_export() -> None:
    original = poolers._onnx_merge_levels
    with gathered_roi_levels():
        assert poolers._onnx_merge_levels is merge_levels_by_gather
    assert poolers._onnx_merge_levels is original


def test_the_exported_graph_scatters_no_pooled_features(tmp_path: Path) -> None:
    detector = TorchvisionDetector.small_example()  # four feature levels
    frame = torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(0))
    model = spread_weights(detector.build(1).eval(), [frame])
    path = tmp_path / "det.onnx"
    export_detector_onnx(detector, model, ["moth"], path, [frame], parity_min_score=0.0)
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in graph.value_info}
    scatters = [n for n in graph.node if n.op_type == "ScatterElements"]
    assert scatters and all(ranks.get(n.output[0]) == 1 for n in scatters)
