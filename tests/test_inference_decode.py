"""OnnxClassifier.predict: a PIL image in memory and its file give the same prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_samples import VALID
from PIL import Image
from test_inference import export_model, metadata, tiny_net

from moths_framework.images import open_rgb
from moths_framework.inference import OnnxClassifier

# Each of these differs from a plain ``convert("RGB")`` of the opened file.
SAMPLES = ["rotated.jpg", "rgba.png", "sixteen-bit.png", "palette-transparent.png"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> OnnxClassifier:
    model = export_model(tiny_net(), tmp_path_factory.mktemp("m") / "tiny.onnx", metadata())
    return OnnxClassifier.from_file(model, "cpu")


@pytest.mark.parametrize("name", SAMPLES)
def test_pil_image_predicts_as_its_file(classifier: OnnxClassifier, tmp_path: Path, name: str):
    path = tmp_path / name
    path.write_bytes(VALID[name])
    from_file = classifier.predict(path, top_k=10)[0]
    from_pil = classifier.predict(Image.open(path), top_k=10)[0]
    assert from_file.ok and from_pil.ok
    assert from_pil.source == str(path)
    for rank, scores in from_file.top_k.items():
        assert [c for c, _ in from_pil.top_k[rank]] == [c for c, _ in scores]
        assert [p for _, p in from_pil.top_k[rank]] == pytest.approx([p for _, p in scores])
    # The sample matters: Pillow's own conversion, unrotated, gives another input.
    plain = classifier.preprocess(Image.open(path).convert("RGB"))
    assert not np.allclose(plain, classifier.preprocess(open_rgb(path)))
