"""Rebuild the zoo's demo detector, ``nl-moths-demo-detector``, from test_data/frames.

    python zoo/build_demo_detector.py

Trains ``configs/detector-dev.yaml`` (CPU, seed 42: ``fasterrcnn_tiny``, 0.8 M
parameters, so the committed files stay small) on the synthetic trap frames of
``test_data/frames``, exports it to ONNX (parity-checked against PyTorch) and adds
it to ``zoo/index.json`` with its safetensors checkpoint and model card. The export
date in the model card is pinned to ``CREATED``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# zoo/build_demo.py, beside this script: the same training run and pinned export date
from build_demo import REPO, train_export_add

MODEL_ID = "nl-moths-demo-detector"
VERSION = "1.0.0"
CREATED = "2026-01-01T00:00:00+00:00"
INFO = {
    "id": MODEL_ID,
    "version": VERSION,
    "title": "Moth detector demo (test_data frames)",
    "description": (
        "A tiny demonstration detector (one class, moth) trained on the framework's "
        "synthetic trap frames (test_data/frames: test_data's moth crops pasted on "
        "generated sheets). It shows trap frames end to end, offline, from a fresh clone; "
        "it has never seen a real trap photo."
    ),
    "intended_use": "trying moths-infer --detector, make demo and tests. Not for real photos.",
    "license": "MIT",
    "citation": (
        "@misc{nl-moths-demo-detector,\n"
        "  title = {nl-moths-demo-detector: the moths-framework demo detector},\n"
        "  year = {2026}\n}"
    ),
    "region": "any (synthetic frames)",
    "limits": [
        "Trained from random weights on about 60 synthetic 320x240 frames: a demo only.",
        "Moths on a plain generated sheet; real sheets have shadows, folds and other insects.",
    ],
    "created": CREATED,
}


def build(index_dir: Path) -> dict:
    """Train, export and add the demo detector to ``index_dir``; returns its index entry."""
    return train_export_add(index_dir, INFO, "configs/detector-dev.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=REPO / "zoo", help="index folder")
    entry = build(parser.parse_args().index)
    for f in entry["files"]:
        print(f"{f['role']:<10} {f['url']}  {f['size']:,} B  sha256 {f['sha256']}")
    print("metrics:", json.dumps(entry["metrics"], sort_keys=True))


if __name__ == "__main__":
    main()
