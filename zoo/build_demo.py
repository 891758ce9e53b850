"""Rebuild the zoo's demo model, ``nl-moths-demo``, from test_data (deterministic).

    moths-prepare test_data/ test_data/source_a test_data/source_b
    python zoo/build_demo.py

Trains with the dev recipe (``configs/dev.yaml``: CPU, seed 42) on timm's tiny
``test_efficientnet`` (0.1 M parameters, so the committed files stay small),
exports it to ONNX, and adds it to ``zoo/index.json`` with its safetensors
checkpoint and model card. The export date in the model card is pinned to
``CREATED``, so two runs on the same machine write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_ID = "nl-moths-demo"
VERSION = "1.0.0"
CREATED = "2026-01-01T00:00:00+00:00"
BACKBONE = "test_efficientnet"
INFO = {
    "id": MODEL_ID,
    "version": VERSION,
    "title": "Dutch moths demo (test_data)",
    "description": (
        "A tiny demonstration model trained on the framework's generated test_data "
        "(synthetic images of 9 Dutch moth and butterfly species). It shows the zoo "
        "end to end, offline, from a fresh clone; its predictions mean nothing for real photos."
    ),
    "intended_use": "trying moths-zoo, moths-infer and warm starts; tests. Not for real photos.",
    "license": "MIT",
    "citation": (
        "@misc{nl-moths-demo,\n  title = {nl-moths-demo: the moths-framework demo model},\n"
        "  year = {2026}\n}"
    ),
    "region": "Netherlands (demo species list of test_data/hierarchy.csv)",
    "limits": [
        "Trained for 10 epochs on about 150 small synthetic images at 64 px: a demo only.",
        "Not calibrated.",
    ],
    "created": CREATED,
}


def run_tool(*command: str) -> None:
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / command[0]), *command[1:]], check=True, cwd=REPO)


def pin_export_date(onnx_path: Path) -> None:
    """The exporter stamps the current time into the model card; pin it for reproducibility."""
    import onnx

    from moths_framework.inference.metadata import MODEL_CARD_KEY

    model = onnx.load(str(onnx_path))
    for prop in model.metadata_props:
        if prop.key == MODEL_CARD_KEY:
            card = json.loads(prop.value)
            card["exported_at"] = CREATED
            prop.value = json.dumps(card, ensure_ascii=False, sort_keys=True)
    onnx.save(model, str(onnx_path))


def build(index_dir: Path) -> dict:
    """Train, export and add the demo model to ``index_dir``; returns its index entry."""
    if not (REPO / "test_data" / "manifest.csv").is_file():
        sys.exit(
            "build_demo: test_data/manifest.csv not found; run "
            "`moths-prepare test_data/ test_data/source_a test_data/source_b` first"
        )
    return train_export_add(
        index_dir, INFO, "configs/dev.yaml",
        "--model.backbone.init_args.name", BACKBONE, "--trainer.deterministic", "true",
    )  # fmt: skip


def train_export_add(index_dir: Path, info: dict, config: str, *options: str) -> dict:
    """Train ``config`` (with ``options``) quietly in a temporary folder, export its best
    checkpoint to ONNX with the export date pinned, and add both to ``index_dir`` under
    ``info``; returns the index entry."""
    from moths_framework.export.zoo_entry import add_model

    with tempfile.TemporaryDirectory(prefix=f"{info['id']}-") as tmp:
        run = Path(tmp) / "run"
        run_tool(
            "moths-fit", "--config", config, *options,
            "--trainer.default_root_dir", str(run),
            "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
        )  # fmt: skip
        onnx_path = Path(tmp) / "model.onnx"
        best = str(run / "best.ckpt")
        run_tool("moths-export", "--onnx", "--ckpt", best, "--output", str(onnx_path))
        pin_export_date(onnx_path)
        return add_model(onnx_path, index_dir, info, checkpoint=run / "best.ckpt", force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=REPO / "zoo", help="index folder")
    entry = build(parser.parse_args().index)
    for f in entry["files"]:
        print(f"{f['role']:<10} {f['url']}  {f['size']:,} B  sha256 {f['sha256']}")


if __name__ == "__main__":
    main()
