"""moths-serve's response bodies, rendered by orjson (``serve.json_body``), at the checklist's
real size: the published schema, and every float32 of the model back bit for bit.

Antenna recomputes from the logits, so a logit must read back as the very
float32 the model gave. The oracles: Python's own ``json`` parser (what a
Django service parses with), the OpenAPI document the server publishes
(checked with ``jsonschema``), and the model's outputs recorded as the server
ran them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from helpers.checklist_model import CHECKLIST
from helpers.image_host import ImageHost
from helpers.image_samples import jpeg, png_bytes
from helpers.running_server import Running, running
from PIL import Image

from moths_framework.serve import ServeOptions, create_app, load_served_model
from moths_framework.serve.json_body import render
from moths_framework.serve.schemas_ami import (
    PipelineResultsResponse,
    ProcessingServiceInfoResponse,
)


def _exact_float32(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def test_float32_arrays_read_back_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]  # every finite float32: subnormals, extremes, signs
    edges = [0.0, -0.0, 0.1, 1 / 3, 1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38]
    values = np.concatenate([values, np.asarray(edges, np.float32)])
    parsed = json.loads(render({"logits": values}))["logits"]
    assert _exact_float32(parsed).view(np.uint32).tolist() == values.view(np.uint32).tolist()


@pytest.fixture(scope="module")
def recorded(serve_model_file: Path) -> Iterator[tuple[Running, list]]:
    """A server whose model calls are recorded: (batch, logits per rank) each."""
    served = load_served_model(serve_model_file)
    run = served.classifier.model_outputs
    calls: list = []

    def recording(batch: np.ndarray) -> tuple:
        logits, features = run(batch)
        calls.append((batch.copy(), {rank: values.copy() for rank, values in logits.items()}))
        return logits, features

    served.classifier.model_outputs = recording
    with running(create_app([served], ServeOptions(max_batch=8, max_wait_ms=100))) as live:
        yield live, calls


def _published(live: Running, name: str) -> jsonschema.Validator:
    """A validator for the OpenAPI document's component ``name``."""
    document = httpx.get(f"{live.url}/openapi.json").json()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_process_body_is_the_published_schema_with_the_models_floats(
    recorded: tuple[Running, list], host: ImageHost
) -> None:
    live, calls = recorded
    datas = [png_bytes(40 + i) for i in range(4)] + [jpeg(45)]
    images = [(f"img-{i}", host.add(f"/floats/{i}.img", d)) for i, d in enumerate(datas)]
    calls.clear()
    body = {"pipeline": "tiny-moths", "source_images": [{"id": i, "url": u} for i, u in images]}
    response = httpx.post(f"{live.url}/process", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = json.loads(response.content)

    _published(live, "PipelineResultsResponse").validate(answer)
    # our own wire model, field for field: nothing missing, nothing extra
    assert PipelineResultsResponse.model_validate(answer).model_dump(mode="json") == answer

    classifier = live.engine.models["tiny-moths"].classifier
    sent = {
        image_id: classifier.preprocess(Image.open(io.BytesIO(data)).convert("RGB"))
        for (image_id, _), data in zip(images, datas, strict=True)
    }
    assert [d["source_image_id"] for d in answer["detections"]] == [i for i, _ in images]
    for detection in answer["detections"]:
        (row,) = [
            (logits, n)
            for batch, logits in calls
            for n, array in enumerate(batch)
            if np.array_equal(array, sent[detection["source_image_id"]])
        ]
        logits, n = row
        ranks = [c["algorithm"]["key"].rsplit("-", 1)[1] for c in detection["classifications"]]
        assert ranks == list(CHECKLIST.ranks)
        for rank, classification in zip(ranks, detection["classifications"], strict=True):
            model_logits = logits[rank][n]
            assert len(classification["logits"]) == len(CHECKLIST.classes(rank))
            got = _exact_float32(classification["logits"])
            assert got.view(np.uint32).tolist() == model_logits.view(np.uint32).tolist()
            shifted = np.exp(model_logits.astype(np.float64) - model_logits.max())
            expected = shifted / shifted.sum()  # temperature 1: a plain softmax
            np.testing.assert_allclose(classification["scores"], expected, rtol=1e-6, atol=1e-12)
            top = CHECKLIST.classes(rank)[int(np.argmax(expected))]
            assert classification["classification"] == top


def test_info_body_is_the_published_schema(recorded: tuple[Running, list]) -> None:
    live, _ = recorded
    response = httpx.get(f"{live.url}/info")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    info = json.loads(response.content)
    _published(live, "ProcessingServiceInfoResponse").validate(info)
    assert ProcessingServiceInfoResponse.model_validate(info).model_dump(mode="json") == info
    (pipeline,) = info["pipelines"]
    species = pipeline["algorithms"][1]["category_map"]["labels"]
    assert species == CHECKLIST.classes("species") and len(species) == 2701
