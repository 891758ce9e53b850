"""moths-serve with a calibrated model: /v1 records carry novelty as moths-infer's do,
and the AMI /process answer keeps Antenna's schema exactly."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from helpers.antenna_schemas import PipelineResultsResponse, antenna_request, parses_unchanged
from helpers.image_host import ImageHost
from helpers.image_samples import png_bytes
from helpers.onnx_models import HIERARCHY, PREPROCESSING, export_model, tiny_net
from helpers.running_server import Running, running

from moths_framework.images import open_rgb
from moths_framework.inference.metadata import ModelMetadata
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.preprocess import preprocess
from moths_framework.inference.writers import prediction_json
from moths_framework.serve import ServeOptions, create_app, load_served_model

SEEDS = range(21, 27)
THRESHOLDS = {"species": 0.3, "group": 0.6, "family": 0.6, "genus": 0.5}


def _features(model: Path, datas: list[bytes]) -> np.ndarray:
    batch = np.stack([preprocess(open_rgb(data), PREPROCESSING) for data in datas])
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (features,) = session.run(["features"], {"image": batch})
    return features


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, calibrated: species_sum roll-up, thresholds, and a novelty detector
    whose threshold splits the test images (some novel, some not)."""
    folder = tmp_path_factory.mktemp("calibrated")
    plain = export_model(tiny_net(), folder / "plain.onnx", ModelMetadata(HIERARCHY, PREPROCESSING))
    features = _features(plain, [png_bytes(s) for s in SEEDS])
    arrays = {
        "center": np.zeros(features.shape[1], np.float32),
        "whitening": np.eye(features.shape[1], dtype=np.float32),
        "means": features[:2],
    }
    scores = NoveltyDetector("mahalanobis", 0.0, arrays).rounded().score(features)
    detector = NoveltyDetector("mahalanobis", float(np.median(scores)), arrays)
    calibration = {"thresholds": THRESHOLDS, "rollup": {"method": "species_sum"}}
    metadata = ModelMetadata(
        HIERARCHY, PREPROCESSING, {"backbone": "tiny"}, {"species": 1.3}, calibration,
        detector.to_json(),
    )  # fmt: skip
    return export_model(tiny_net(), folder / "calibrated.onnx", metadata)


@pytest.fixture(scope="module")
def server(calibrated_model: Path) -> Iterator[Running]:
    options = ServeOptions(max_wait_ms=2, max_batch=4)
    with running(create_app([load_served_model(calibrated_model)], options)) as live:
        yield live


def test_v1_records_carry_novelty_as_moths_infer_s(server: Running, tmp_path: Path) -> None:
    datas = [png_bytes(s) for s in SEEDS]
    images = [{"id": str(i), "b64": base64.b64encode(d).decode()} for i, d in enumerate(datas)]
    images.append({"id": "bad", "b64": base64.b64encode(b"not an image").decode()})
    response = httpx.post(f"{server.url}/v1/classify", json={"images": images, "top_k": 3})
    assert response.status_code == 200, response.text
    results = response.json()["results"]

    classifier = server.engine.models["calibrated"].classifier
    assert classifier.rollup == "species_sum" and classifier.novelty is not None
    paths = []
    for i, data in enumerate(datas):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(data)
    for got, prediction in zip(results, classifier.predict(paths, top_k=3), strict=False):
        want = prediction_json(prediction, HIERARCHY.ranks, novelty=True)
        assert {k: v for k, v in got.items() if k not in ("id", "path")} == {
            k: v for k, v in want.items() if k != "path"
        }
    novel = [r["novel"] for r in results[:-1]]
    assert True in novel and False in novel  # the threshold splits them: the flag is live
    assert all(isinstance(r["novelty_score"], float) for r in results[:-1])
    bad = results[-1]
    assert bad["error"] and bad["novelty_score"] is None and bad["novel"] is None


def test_ami_process_keeps_antenna_s_schema(server: Running, host: ImageHost) -> None:
    images = [(str(i), host.add(f"/ami/{i}.png", png_bytes(s))) for i, s in enumerate(SEEDS)]
    response = httpx.post(f"{server.url}/process", json=antenna_request("calibrated", images))
    assert response.status_code == 200, response.text
    result = parses_unchanged(PipelineResultsResponse, response.json())  # no field added
    assert len(result.detections) == len(images)
    assert "novelty_score" not in response.text


def test_v1_models_says_what_calibration_chose(server: Running) -> None:
    (info,) = httpx.get(f"{server.url}/v1/models").json()["models"]
    calibration = info["calibration"]
    assert calibration["rollup"] == "species_sum"
    assert calibration["novelty"]["method"] == "mahalanobis"
    assert calibration["temperature"]["species"] == 1.3
    assert info["thresholds"] == THRESHOLDS
