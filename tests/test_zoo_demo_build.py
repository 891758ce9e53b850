"""``python zoo/build_demo.py`` rebuilds the committed demo model under ``zoo/`` (slow).

Training is not bit-reproducible across machines (CPU kernels differ), so a rebuild is
compared with the committed files in two ways: what does not depend on the trained
weights must be identical (the file list, the index entry's fields, the hierarchy, the
preprocessing, the metadata and model card keys); the weights, the metrics and the
model's answers on test_data's images must agree within stated tolerances.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "zoo"
MODEL = Path("nl-moths-demo")
ONNX, CHECKPOINT = MODEL / "1.0.0" / "model.onnx", MODEL / "1.0.0" / "model.safetensors"
METRIC_TOLERANCE = 0.02  # absolute, on every val metric
WEIGHT_TOLERANCE = 0.05  # relative L2 difference of all weights together
TOP1_AGREEMENT = 0.95  # species top-1 on test_data's 226 images
PROBABILITY_TOLERANCE = 0.05  # absolute, any species probability of any image


def files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in (root / MODEL).rglob("*") if p.is_file()}


def split_metrics(entry: dict) -> tuple[dict, dict]:
    """(``entry`` without its file hashes, sizes and metric values, the metrics)."""
    rest = {k: v for k, v in entry.items() if k != "metrics"}
    rest["files"] = [{"role": f["role"], "url": f["url"]} for f in entry["files"]]
    return rest, entry["metrics"]


def assert_metrics_close(rebuilt: dict, committed: dict) -> None:
    assert rebuilt.keys() == committed.keys()
    for name, value in committed.items():
        assert rebuilt[name] == pytest.approx(value, abs=METRIC_TOLERANCE), name


def onnx_props(root: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(root / ONNX)).metadata_props}


def species_probabilities(root: Path, images: list[Path]) -> np.ndarray:
    """[images, species] probabilities of the model under ``root``, in class-name order."""
    from moths_framework.inference import OnnxClassifier

    model = OnnxClassifier.from_file(root / ONNX, providers="cpu")
    predictions = model.predict(images, top_k=64)
    return np.array([[p for _, p in sorted(pred.top_k["species"])] for pred in predictions])


@pytest.mark.slow
def test_build_demo_rebuilds_the_committed_model(tmp_path):
    from moths_framework.data.prepare import prepare_sources

    # what the script's docstring asks for first: moths-prepare test_data/ test_data/source_*
    sources = [REPO / "test_data" / "source_a", REPO / "test_data" / "source_b"]
    prepare_sources(REPO / "test_data", sources, progress=False)
    rebuilt = tmp_path / "zoo"
    script = str(REPO / "zoo" / "build_demo.py")
    subprocess.run([sys.executable, script, "--index", str(rebuilt)], check=True, cwd=REPO)
    assert_same_model(rebuilt, COMMITTED)


def assert_same_model(rebuilt: Path, committed: Path) -> None:
    """The demo model in the index folder ``rebuilt`` is the one in ``committed``."""
    assert files(rebuilt) == files(committed) == {MODEL / "README.md", ONNX, CHECKPOINT}
    (new_entry,) = json.loads((rebuilt / "index.json").read_text())["models"]
    (old_entry,) = [
        entry
        for entry in json.loads((committed / "index.json").read_text())["models"]
        if entry["id"] == str(MODEL)  # the committed index also holds the demo detector
    ]
    (new_rest, new_metrics), (old_rest, old_metrics) = map(split_metrics, (new_entry, old_entry))
    assert new_rest == old_rest  # ids, text, backbone, ranks, preprocessing, data, files
    assert_metrics_close(new_metrics, old_metrics)

    # the ONNX metadata: identical but for the model card's validation metrics
    new_props, old_props = onnx_props(rebuilt), onnx_props(committed)
    assert new_props.keys() == old_props.keys()
    for key in new_props.keys() - {"moths.model_card"}:
        assert new_props[key] == old_props[key], key  # hierarchy, preprocessing, ...
    new_card, old_card = (json.loads(p["moths.model_card"]) for p in (new_props, old_props))
    new_card_metrics, old_card_metrics = (c.pop("validation_metrics") for c in (new_card, old_card))
    assert new_card == old_card
    assert_metrics_close(new_card_metrics, old_card_metrics)

    # the checkpoint: the same header but for the metrics, the same tensors, close weights
    new_ckpt, old_ckpt = (safe_open(str(root / CHECKPOINT), "np") for root in (rebuilt, committed))
    new_meta, old_meta = (
        json.loads(c.metadata()["moths.checkpoint"]) for c in (new_ckpt, old_ckpt)
    )
    assert_metrics_close(new_meta.pop("metrics"), old_meta.pop("metrics"))
    assert new_meta == old_meta
    assert set(new_ckpt.keys()) == set(old_ckpt.keys())
    new_w, old_w = (np.concatenate([c.get_tensor(k).ravel().astype(np.float64)
                                    for k in sorted(old_ckpt.keys())])
                    for c in (new_ckpt, old_ckpt))  # fmt: skip
    assert np.linalg.norm(new_w - old_w) <= WEIGHT_TOLERANCE * np.linalg.norm(old_w)

    # the answers on every test_data image
    images = sorted(p for p in (REPO / "test_data" / "image_folder").rglob("*") if p.is_file())
    assert len(images) == 226
    new_probs, old_probs = (species_probabilities(r, images) for r in (rebuilt, committed))
    agreement = np.mean(new_probs.argmax(axis=1) == old_probs.argmax(axis=1))
    assert agreement >= TOP1_AGREEMENT
    assert np.abs(new_probs - old_probs).max() <= PROBABILITY_TOLERANCE

    # the model card README: the same text but for the file hashes and sizes and the
    # metric values (compared above)
    def card_text(root: Path) -> list[str]:
        lines = (root / MODEL / "README.md").read_text().splitlines()
        return [line for line in lines if not line.startswith(("| onnx |", "| checkpoint |",
                                                               "| val/"))]  # fmt: skip

    assert card_text(rebuilt) == card_text(committed)
