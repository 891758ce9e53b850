"""/v1/classify with ``features``: each image's feature vector, as the model's ``features``
output gives it (the oracle: ONNX Runtime run here on the same preprocessing)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from helpers.image_samples import png_bytes
from helpers.onnx_models import HIERARCHY, PREPROCESSING, export_model, tiny_net
from helpers.running_server import Running, running

from moths_framework.images import open_rgb
from moths_framework.inference.metadata import ModelMetadata
from moths_framework.inference.preprocess import preprocess
from moths_framework.serve import ServeOptions, create_app, load_served_model

SEEDS = range(31, 34)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("features")
    return export_model(tiny_net(), folder / "tiny.onnx", ModelMetadata(HIERARCHY, PREPROCESSING))


@pytest.fixture(scope="module")
def server(model: Path) -> Iterator[Running]:
    with running(create_app([load_served_model(model)], ServeOptions(max_wait_ms=2))) as live:
        yield live


def by_hand(model: Path, datas: list[bytes]) -> np.ndarray:
    batch = np.stack([preprocess(open_rgb(data), PREPROCESSING) for data in datas])
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(["features"], {"image": batch})[0]


def test_features_when_asked_and_only_then(server: Running, model: Path) -> None:
    datas = [png_bytes(s) for s in SEEDS]
    images = [{"id": str(i), "b64": base64.b64encode(d).decode()} for i, d in enumerate(datas)]
    images.append({"id": "bad", "b64": base64.b64encode(b"not an image").decode()})
    asked = httpx.post(f"{server.url}/v1/classify", json={"images": images, "features": True})
    assert asked.status_code == 200, asked.text
    results = asked.json()["results"]
    expected = by_hand(model, datas)
    for result, vector in zip(results, expected, strict=False):
        np.testing.assert_allclose(result["features"], vector, rtol=1e-5, atol=1e-6)
    assert results[-1]["error"] and results[-1]["features"] is None
    plain = httpx.post(f"{server.url}/v1/classify", json={"images": images[:1]})
    assert "features" not in plain.json()["results"][0]  # the record moths-infer writes
    files = [("files", ("a.png", datas[0], "image/png"))]
    form = httpx.post(f"{server.url}/v1/classify", files=files, data={"features": "true"})
    assert form.status_code == 200, form.text
    np.testing.assert_allclose(form.json()["results"][0]["features"], expected[0], rtol=1e-5,
                               atol=1e-6)  # fmt: skip
