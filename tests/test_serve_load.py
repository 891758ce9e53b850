"""moths-serve under load and faults: concurrency, batching, backpressure, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from helpers.image_host import ImageHost
from helpers.image_samples import png_bytes
from helpers.running_server import Running, running
from PIL import Image

from moths_framework.serve import ServeOptions, create_app, load_served_model

CLIENTS, REQUESTS_EACH, DISTINCT_IMAGES = 16, 25, 12


def _process(pipeline: str, images: list[tuple[str, str]]) -> dict:
    return {"pipeline": pipeline, "source_images": [{"id": i, "url": u} for i, u in images]}


def test_concurrent_clients_get_their_own_images_exactly_once(
    serve_model_file: Path,
    host: ImageHost,
) -> None:
    urls = [host.add(f"/load/{i}.png", png_bytes(100 + i)) for i in range(DISTINCT_IMAGES)]
    served = load_served_model(serve_model_file)
    expected = {}  # image index -> species scores the model gives it alone
    for index in range(DISTINCT_IMAGES):
        image = Image.open(io.BytesIO(host.files[f"/load/{index}.png"]))
        batch = served.classifier.preprocess(image.convert("RGB"))[None]
        expected[index] = served.classifier.probabilities(batch)["species"][0]
    options = ServeOptions(max_batch=16, max_wait_ms=5)
    with running(create_app([served], options)) as live:
        answers = asyncio.run(_clients(live.url, urls))
        batches = live.engine.batchers["tiny-moths"].batches
    total = sum(len(sent) for sent, _ in answers)
    assert len(answers) == CLIENTS * REQUESTS_EACH
    assert batches < total  # images of concurrent requests shared model calls
    for sent, body in answers:
        ids = [d["source_image_id"] for d in body["detections"]]
        assert sorted(ids) == sorted(image_id for image_id, _ in sent)  # each exactly once
        assert body["errors"] == []
        for detection in body["detections"]:
            index = int(detection["source_image_id"].rsplit("-", 1)[1])
            species = detection["classifications"][0]
            np.testing.assert_allclose(species["scores"], expected[index], atol=1e-6)


async def _clients(base: str, urls: list[str]) -> list[tuple[list[tuple[str, str]], dict]]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def one_client(number: int) -> list:
            rng = random.Random(number)
            answers = []
            for request in range(REQUESTS_EACH):
                picks = rng.sample(range(len(urls)), rng.randint(1, 4))
                sent = [(f"{number}.{request}.{j}-{i}", urls[i]) for j, i in enumerate(picks)]
                response = await client.post("/process", json=_process("tiny-moths", sent))
                assert response.status_code == 200, response.text
                answers.append((sent, response.json()))
            return answers

        per_client = await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))
    return [answer for answers in per_client for answer in answers]


def _in_background(url: str, body: dict) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def post() -> None:
        result["response"] = httpx.post(url, json=body, timeout=30)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, result


def _wait_until(condition, seconds: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_full_server_answers_503_with_retry_after(serve_model_file: Path, host: ImageHost) -> None:
    slow = [(str(i), host.add(f"/full/{i}.png", png_bytes(i), delay=1.0)) for i in range(2)]
    options = ServeOptions(max_in_flight=2, fetch_timeout=5)
    with running(create_app([load_served_model(serve_model_file)], options)) as live:
        thread, first = _in_background(f"{live.url}/process", _process("tiny-moths", slow))
        _wait_until(lambda: live.engine.admission.in_flight == 2)
        refused = httpx.post(f"{live.url}/process", json=_process("tiny-moths", slow[:1]))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        three = [*slow, ("2", slow[0][1])]
        too_many = httpx.post(f"{live.url}/process", json=_process("tiny-moths", three))
        assert too_many.status_code == 413 and "at most 2" in too_many.text
        thread.join(10)
        assert first["response"].status_code == 200
        assert len(first["response"].json()["detections"]) == 2
        assert live.engine.admission.in_flight == 0
        assert httpx.get(f"{live.url}/readyz").status_code == 200


def test_slow_request_answers_504(serve_model_file: Path, host: ImageHost) -> None:
    url = host.add("/timeout/a.png", png_bytes(1), delay=2.0)
    options = ServeOptions(request_timeout=0.3, fetch_timeout=5)
    with running(create_app([load_served_model(serve_model_file)], options)) as live:
        response = httpx.post(f"{live.url}/process", json=_process("tiny-moths", [("1", url)]))
        assert response.status_code == 504 and "over 0.3 s" in response.text
        assert live.engine.admission.in_flight == 0


def test_graceful_shutdown_finishes_requests_in_flight(
    serve_model_file: Path,
    host: ImageHost,
) -> None:
    url = host.add("/shutdown/a.png", png_bytes(2), delay=0.8)
    server = Running(create_app([load_served_model(serve_model_file)], ServeOptions())).start()
    thread, result = _in_background(f"{server.url}/process", _process("tiny-moths", [("9", url)]))
    _wait_until(lambda: server.engine.admission.in_flight == 1)
    server.stop()  # what SIGTERM does: stop accepting, let requests in flight finish
    thread.join(10)
    response = result["response"]
    assert response.status_code == 200
    assert [d["source_image_id"] for d in response.json()["detections"]] == ["9"]
    assert not server.thread.is_alive()


def test_readyz_is_503_while_models_warm_up(serve_model_file: Path, host: ImageHost) -> None:
    served = load_served_model(serve_model_file)
    release = threading.Event()
    run = served.classifier.model_outputs

    def slow_first_call(batch: np.ndarray) -> tuple:
        release.wait(10)  # bounded
        return run(batch)

    served.classifier.model_outputs = slow_first_call  # the batcher's call, this instance only
    live = Running(create_app([served], ServeOptions())).start(ready=False)
    try:
        loading = httpx.get(f"{live.url}/readyz")
        assert loading.status_code == 503 and loading.json() == {"status": []}
        url = host.add("/warm/a.png", png_bytes(3))
        refused = httpx.post(f"{live.url}/process", json=_process("tiny-moths", [("1", url)]))
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert httpx.get(f"{live.url}/livez").status_code == 200
        release.set()
        _wait_until(lambda: httpx.get(f"{live.url}/readyz").status_code == 200)
    finally:
        release.set()
        live.stop()
