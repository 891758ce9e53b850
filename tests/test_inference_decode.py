"""How inference decodes: PIL images like their files, and the fast JPEG decode.

The exact decode (``fast_decode=False``) is bit-equal with the training evaluation
transform (``test_inference.test_preprocessing_equals_torchvision``); the fast one
(the default, which validation shares: tests/test_scaled_decode.py) is not, and the
bound on its difference is held here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from helpers.image_samples import VALID
from helpers.onnx_models import export_model, metadata, tiny_net
from PIL import Image, ImageDraw, ImageFilter

from moths_framework.data.transforms import eval_transform
from moths_framework.images import open_rgb
from moths_framework.inference import OnnxClassifier
from moths_framework.inference.preprocess import model_input
from moths_framework.preprocessing import Preprocessing
from moths_framework.scaled_decode import eval_region, reduction

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


def photo_like_jpeg(seed: int, size: tuple[int, int]) -> bytes:
    """Smooth gradients, shapes, blur and mild noise at quality 90: a photo's spectrum."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [128 + 60 * np.sin(6 * (a * x / width + b * y / height) + 3 * c)
         for a, b, c in rng.uniform(-1, 1, (3, 3))],
        axis=-1,
    )  # fmt: skip
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(20):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, 150)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(rng.integers(0, 256, 3).tolist()))
    image = image.filter(ImageFilter.GaussianBlur(2.0))
    noise = rng.normal(0, 3, (height, width, 1))
    pixels = (np.asarray(image) + noise).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_fast_decode_drafts_to_the_smallest_scale_covering_the_resize_target() -> None:
    p = Preprocessing((224, 224), 0.875)  # shorter side resized to 256
    assert reduction(eval_region(p)(1600, 1200).reduction_limit(1600, 1200)) == 4  # not 2
    # at 1/4 the shorter side would be 250
    assert reduction(eval_region(p)(1000, 1900).reduction_limit(1000, 1900)) == 2


@pytest.mark.parametrize("size", [(1600, 1200), (1100, 700), (900, 1500)])
def test_fast_decode_stays_within_the_documented_tolerance(size: tuple[int, int]) -> None:
    """Mean difference under 1 grey level, 99 % of values within 4 (README: 0.5 and 3)."""
    p = Preprocessing((224, 224), 0.875)
    data = photo_like_jpeg(sum(size), size)
    reference = eval_transform(p)(open_rgb(data)).numpy()
    fast = model_input(data, p)
    grey_levels = np.abs(fast - reference) * np.asarray(p.std).reshape(3, 1, 1) * 255
    assert grey_levels.mean() < 1.0
    assert np.percentile(grey_levels, 99) <= 4.0
