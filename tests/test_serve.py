"""moths-serve over real HTTP: the AMI processing-service API field for field, /v1, bad input.

A real uvicorn server runs on a free loopback port in a thread
(``helpers.running_server``); test images are served by a local ``http.server``
on 127.0.0.1 (``helpers.image_host``). The AMI wire objects are checked against
pydantic models written from Antenna's ``ami/ml/schemas.py``
(``helpers.antenna_schemas``), independent of ``moths_framework.serve``'s own.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.antenna_schemas import (
    AlgorithmReference,
    BoundingBox,
    PipelineResultsResponse,
    ProcessingServiceInfoResponse,
    antenna_request,
    parses_unchanged,
)
from helpers.checklist_model import CHECKLIST
from helpers.image_host import ImageHost
from helpers.image_samples import jpeg, png_bytes, png_header_only
from helpers.onnx_models import export_model, metadata, tiny_net
from helpers.running_server import Running, running
from PIL import Image

from moths_framework.inference import OnnxClassifier
from moths_framework.inference.writers import prediction_json
from moths_framework.serve import ServeOptions, create_app, load_served_model
from moths_framework.serve.served import file_sha256

# --- the server under test (serve_model_file and host are conftest's) ---


@pytest.fixture(scope="module")
def server(serve_model_file: Path) -> Iterator[Running]:
    options = ServeOptions(fetch_timeout=0.5, max_wait_ms=2, max_batch=8)
    with running(create_app([load_served_model(serve_model_file)], options)) as live:
        yield live


# --- /livez, /readyz, /info ---


def test_health_endpoints(server: Running) -> None:
    assert httpx.get(f"{server.url}/livez").json() == {"status": True}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": ["tiny-moths"]}


def test_info_lists_whole_image_then_one_classifier_per_rank(
    server: Running, serve_model_file: Path
) -> None:
    info = parses_unchanged(ProcessingServiceInfoResponse, httpx.get(f"{server.url}/info").json())
    (pipeline,) = info.pipelines
    assert pipeline.slug == "tiny-moths" and pipeline.stages == []
    version = int(file_sha256(serve_model_file)[:7], 16)
    assert pipeline.version == version
    detector, *classifiers = pipeline.algorithms
    assert (detector.name, detector.key, detector.task_type, detector.version) == (
        "Whole image", "whole-image", "localization", 1
    )  # fmt: skip
    assert [a.task_type for a in classifiers] == ["classification"] * len(CHECKLIST.ranks)
    assert len({a.key for a in pipeline.algorithms}) == len(pipeline.algorithms)
    expected_rank = {"species": "SPECIES", "group": "UNKNOWN", "family": "FAMILY", "genus": "GENUS"}
    for rank, algorithm in zip(CHECKLIST.ranks, classifiers, strict=True):
        assert algorithm.version == version and algorithm.version_name
        cmap = algorithm.category_map
        labels = CHECKLIST.classes(rank)
        assert cmap.labels == labels
        assert [d["index"] for d in cmap.data] == list(range(len(labels)))
        assert [d["label"] for d in cmap.data] == labels
        ranks = [d["taxon_rank"] for d in cmap.data]
        assert ranks[0] == "UNKNOWN"  # Other
        assert set(ranks[1:]) == {expected_rank[rank]}


def test_version_changes_with_the_model_file(tmp_path: Path, serve_model_file: Path) -> None:
    other = export_model(
        tiny_net(CHECKLIST), tmp_path / "tiny-moths.onnx", metadata({"species": 2.0}, CHECKLIST)
    )
    first, second = load_served_model(serve_model_file), load_served_model(other)
    assert first.slug == second.slug and first.version != second.version


# --- /process ---


def test_process_matches_onnx_classifier(server: Running, host: ImageHost, tmp_path: Path) -> None:
    datas = [png_bytes(1), jpeg(2), png_bytes(3, 25, 50)]
    images = [(str(100 + i), host.add(f"/match/{i}.img", d)) for i, d in enumerate(datas)]
    response = httpx.post(f"{server.url}/process", json=antenna_request("tiny-moths", images))
    assert response.status_code == 200, response.text
    result = parses_unchanged(PipelineResultsResponse, response.json())
    assert result.pipeline == "tiny-moths" and result.algorithms == {} and result.errors == []
    assert [(s.id, s.url) for s in result.source_images] == images
    assert [int(d.source_image_id) for d in result.detections] == [100, 101, 102]

    classifier = server.engine.models["tiny-moths"].classifier
    paths = []
    for i, data in enumerate(datas):
        paths.append(tmp_path / f"{i}.img")
        paths[-1].write_bytes(data)
    expected = classifier.predict(paths, top_k=max(CHECKLIST.num_classes().values()))
    for detection, data, prediction in zip(result.detections, datas, expected, strict=True):
        width, height = Image.open(io.BytesIO(data)).size
        assert detection.bbox == BoundingBox(x1=0, y1=0, x2=width, y2=height)
        assert detection.algorithm == AlgorithmReference(name="Whole image", key="whole-image")
        assert detection.crop_image_url is None
        logits = classifier.logits(classifier.preprocess(Image.open(io.BytesIO(data)))[None])
        by_rank = dict(zip(CHECKLIST.ranks, detection.classifications, strict=True))
        for rank, classification in by_rank.items():
            labels = CHECKLIST.classes(rank)
            assert classification.classification == prediction.top1(rank)[0]
            assert classification.labels is None
            assert classification.terminal == (rank == "species")
            assert classification.algorithm.key == f"tiny-moths-{rank}"
            expected_probs = dict(prediction.top_k[rank])
            assert len(classification.scores) == len(labels)
            for label, score in zip(labels, classification.scores, strict=True):
                assert abs(score - expected_probs[label]) < 1e-6
            np.testing.assert_allclose(classification.logits, logits[rank][0], atol=1e-5)


def test_process_trailing_slash_and_deprecated_path(server: Running, host: ImageHost) -> None:
    url = host.add("/paths/a.png", png_bytes(7))
    for path in ("/process/", "/pipeline/process/"):
        body = {"pipeline": "tiny-moths", "source_images": [{"id": "7", "url": url}]}
        response = httpx.post(f"{server.url}{path}", json=body)
        assert response.status_code == 200, (path, response.text)
        assert [d["source_image_id"] for d in response.json()["detections"]] == ["7"]


def test_bad_images_are_reported_per_image(
    server: Running, host: ImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    good = host.add("/bad/good.png", png_bytes(5))
    cases = {  # what went wrong with a fetched image is in the server's log, under a ref
        "text": (host.add("/bad/notes.jpg", b"this is not an image"), "not-an-image"),
        "truncated": (host.add("/bad/cut.jpg", jpeg(6)[:300]), "truncated"),
        "zero": (host.add("/bad/zero.jpg", b""), "empty"),
        "bomb": (host.add("/bad/bomb.png", png_header_only(20_000, 20_000)), "decompression-bomb"),
        "missing": (host.url("/bad/missing.jpg"), "HTTP 404"),
        "slow": (host.add("/bad/slow.jpg", png_bytes(8), delay=3.0), "timed out after 0.5 s"),
    }
    refused = {"file": "file:///etc/hostname", "unparsable": "http://[::1"}  # the client is told
    images = [("1", good), *((name, url) for name, (url, _) in cases.items()), *refused.items()]
    caplog.set_level(logging.INFO, logger="moths_framework")
    started = time.monotonic()
    response = httpx.post(f"{server.url}/process", json=antenna_request("tiny-moths", images))
    assert time.monotonic() - started < 2.5  # the slow URL was cut off, not waited for
    assert response.status_code == 200, response.text
    result = parses_unchanged(PipelineResultsResponse, response.json())
    assert [d.source_image_id for d in result.detections] == ["1"]
    errors = {e["image_id"]: e["error"] for e in result.errors}
    assert set(errors) == set(cases) | set(refused)
    for name, (_, reason) in cases.items():
        assert errors[name].startswith("cannot fetch or decode the image at this URL (ref ")
        ref = errors[name].rsplit(" ", 1)[1][:-1]
        (line,) = [r.getMessage() for r in caplog.records if f"[ref {ref}]" in r.getMessage()]
        assert reason in line and repr(name) in line, (name, line)
    assert errors["file"] == "URL refused: URL scheme 'file' refused: only http and https"
    assert errors["unparsable"].startswith("URL refused: malformed URL")
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_bad_requests_are_refused_whole(server: Running, host: ImageHost) -> None:
    url = host.add("/req/a.png", png_bytes(9))
    unknown = httpx.post(f"{server.url}/process", json=antenna_request("no-such", [("1", url)]))
    assert unknown.status_code == 422 and "unknown pipeline 'no-such'" in unknown.text
    malformed = httpx.post(
        f"{server.url}/process",
        content=b'{"pipeline": "tiny-moths", "source_images": [',
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422 and "json_invalid" in malformed.text
    no_url = httpx.post(
        f"{server.url}/process", json={"pipeline": "tiny-moths", "source_images": [{"id": "1"}]}
    )
    assert no_url.status_code == 422
    assert httpx.get(f"{server.url}/readyz").status_code == 200


# --- /v1 ---


def _expected_records(classifier: OnnxClassifier, datas: list[bytes], tmp_path: Path) -> list:
    paths = []
    for i, data in enumerate(datas):
        paths.append(tmp_path / f"v1-{i}.png")
        paths[-1].write_bytes(data)
    records = [prediction_json(p, CHECKLIST.ranks) for p in classifier.predict(paths, top_k=3)]
    for record in records:
        del record["path"]
    return records


def test_v1_classify_json_equals_moths_infer_records(
    server: Running, host: ImageHost, tmp_path: Path
) -> None:
    datas = [png_bytes(11), png_bytes(12)]
    body = {
        "images": [
            {"id": "a", "url": host.add("/v1/a.png", datas[0])},
            {"id": "b", "b64": base64.b64encode(datas[1]).decode()},
            {"id": "c", "b64": base64.b64encode(b"not an image").decode()},
        ],
        "top_k": 3,
    }
    response = httpx.post(f"{server.url}/v1/classify", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert results[0]["path"] == body["images"][0]["url"]
    classifier = server.engine.models["tiny-moths"].classifier
    expected = _expected_records(classifier, datas, tmp_path)
    for got, want in zip(results[:2], expected, strict=True):
        assert {k: v for k, v in got.items() if k not in ("id", "path")} == want
    assert "not-an-image" in results[2]["error"] and results[2]["prediction"] is None


def test_v1_classify_multipart_with_options(server: Running, tmp_path: Path) -> None:
    datas = [png_bytes(13), png_bytes(14)]
    files = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(datas)]
    listed = CHECKLIST.classes("species")[1:3]
    form = {"top_k": "2", "thresholds": "species=0.0", "species_list": listed}
    response = httpx.post(f"{server.url}/v1/classify", files=files, data=form)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["path"] for r in results] == ["0.png", "1.png"]
    for result in results:
        assert result["species"] in ("Other", *listed)
        assert result["prediction_rank"] == "species" and result["confident"] is True
        assert len(result["top_k"]["species"]) == 2
    unknown = httpx.post(
        f"{server.url}/v1/classify", files=files[:1], data={"species_list": ["Zus nope"]}
    )
    assert unknown.status_code == 422 and "Zus nope" in unknown.text
    for thresholds, message in [
        ("species:0.5", "thresholds: expected RANK=PROBABILITY, got 'species:0.5'"),
        ("species=2", "thresholds: threshold of 'species' must be in [0, 1], got 2"),
        ("kingdom=0.5", "threshold for unknown rank(s) kingdom"),
    ]:
        bad = httpx.post(
            f"{server.url}/v1/classify", files=files[:1], data={"thresholds": thresholds}
        )
        assert bad.status_code == 422 and message in bad.json()["detail"], bad.text


def test_v1_models_describes_the_model(server: Running, serve_model_file: Path) -> None:
    (info,) = httpx.get(f"{server.url}/v1/models").json()["models"]
    assert info["slug"] == "tiny-moths" and info["sha256"] == file_sha256(serve_model_file)
    assert info["ranks"] == list(CHECKLIST.ranks)
    assert info["classes"]["genus"] == CHECKLIST.classes("genus")
    assert info["thresholds"] == dict.fromkeys(CHECKLIST.ranks, 0.5)
    assert info["calibration"] == {"temperature": dict.fromkeys(CHECKLIST.ranks, 1.0)}
    assert info["card"] == {"backbone": "tiny"}


# --- auth and limits ---


def test_token_required_except_health(serve_model_file: Path, host: ImageHost) -> None:
    options = ServeOptions(token="s3cret-token", max_body_bytes=4096)
    url = host.add("/auth/a.png", png_bytes(15))
    body = {"pipeline": "tiny-moths", "source_images": [{"id": "1", "url": url}]}
    with running(create_app([load_served_model(serve_model_file)], options)) as live:
        assert httpx.get(f"{live.url}/livez").status_code == 200
        assert httpx.get(f"{live.url}/readyz").status_code == 200
        for path in ("/info", "/v1/models", "/docs"):
            missing = httpx.get(f"{live.url}{path}")
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        wrong = httpx.post(f"{live.url}/process", json=body, headers=_bearer("s3cret-tokeX"))
        assert wrong.status_code == 401 and "bearer token" in wrong.text
        right = httpx.post(f"{live.url}/process", json=body, headers=_bearer("s3cret-token"))
        assert right.status_code == 200 and len(right.json()["detections"]) == 1
        big = {"images": [{"b64": "A" * 8000}]}
        too_large = httpx.post(f"{live.url}/v1/classify", json=big, headers=_bearer("s3cret-token"))
        assert too_large.status_code == 413 and "4096 bytes" in too_large.text


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
