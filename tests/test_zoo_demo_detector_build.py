"""``python zoo/build_demo_detector.py`` rebuilds the committed demo detector (slow).

As for the demo classifier (tests/test_zoo_demo_build.py): training is not
bit-reproducible across machines, so what does not depend on the trained weights
must be identical (the files, the index entry's fields, the ONNX metadata but the
model card's metrics), and the metrics and the boxes found on test_data/frames must
agree within stated tolerances; both must find the moths COCO's truth lists.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "zoo"
MODEL = Path("nl-moths-demo-detector")
ONNX = MODEL / "1.0.0" / "model.onnx"
CHECKPOINT = MODEL / "1.0.0" / "model.safetensors"
FRAMES = REPO / "test_data" / "frames"
METRIC_TOLERANCE = 0.05  # absolute, on val mAP, mAP@0.5, mAP@0.75
COUNT_TOLERANCE = 0.05  # relative, moths found on all 88 frames
FRAME_COUNT_TOLERANCE = 0.5  # mean absolute difference of the moths found per frame


def entry_of(root: Path) -> dict:
    models = json.loads((root / "index.json").read_text())["models"]
    (entry,) = [m for m in models if m["id"] == str(MODEL)]
    return entry


def without_weights(entry: dict) -> dict:
    """``entry`` without its metric values and its files' hashes and sizes."""
    rest = {k: v for k, v in entry.items() if k != "metrics"}
    rest["files"] = [{"role": f["role"], "url": f["url"]} for f in entry["files"]]
    return rest


def moths_per_frame(root: Path, frames: list[Path]) -> np.ndarray:
    from moths_framework.inference import OnnxDetector

    detector = OnnxDetector.from_file(root / ONNX, providers="cpu")
    return np.array([len(detector.detect(frame)) for frame in frames])


@pytest.mark.slow
def test_build_demo_detector_rebuilds_the_committed_detector(tmp_path):
    rebuilt = tmp_path / "zoo"
    script = str(REPO / "zoo" / "build_demo_detector.py")
    subprocess.run([sys.executable, script, "--index", str(rebuilt)], check=True, cwd=REPO)

    def files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in (root / MODEL).rglob("*") if p.is_file()}

    assert files(rebuilt) == files(COMMITTED) == {MODEL / "README.md", ONNX, CHECKPOINT}
    new, old = entry_of(rebuilt), entry_of(COMMITTED)
    assert without_weights(new) == without_weights(old)
    assert new["task"] == "detection" and new["classes"] == ["moth"]
    assert new["metrics"].keys() == old["metrics"].keys()
    for name, value in old["metrics"].items():
        assert new["metrics"][name] == pytest.approx(value, abs=METRIC_TOLERANCE), name
    assert new["metrics"]["val/map_50"] >= 0.9  # the bar, on held-out frames

    props = [{p.key: p.value for p in onnx.load(str(r / ONNX)).metadata_props}
             for r in (rebuilt, COMMITTED)]  # fmt: skip
    assert props[0].keys() == props[1].keys()
    for key in props[0].keys() - {"moths.model_card"}:
        assert props[0][key] == props[1][key], key  # task, classes, preprocessing, thresholds

    # the boxes each finds on every frame, against each other and the truth
    truth = json.loads((FRAMES / "instances.json").read_text())
    frames = sorted((FRAMES / "images").iterdir())
    assert len(frames) == len(truth["images"]) == 88
    new_counts, old_counts = (moths_per_frame(r, frames) for r in (rebuilt, COMMITTED))
    assert np.abs(new_counts - old_counts).mean() <= FRAME_COUNT_TOLERANCE
    true_total = len(truth["annotations"])
    for counts in (new_counts, old_counts):
        assert abs(counts.sum() - true_total) <= COUNT_TOLERANCE * true_total
