"""moths-serve against hostile requests: every failure is one image's, no client starves the others.

Each test runs its own in-process server (``helpers.running_server``); images
come from a loopback ``ImageHost``. Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import logging
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.image_host import MALFORMED, ImageHost
from helpers.image_samples import png_bytes
from helpers.running_server import running
from PIL import Image

from moths_framework.inference import OnnxClassifier
from moths_framework.serve import ServeOptions, create_app, load_served_model
from moths_framework.serve.schemas_ami import PipelineRequest

_REF = re.compile(r"\(ref [0-9a-f]+\)")


@pytest.fixture
def model(serve_model_file: Path) -> Path:
    return serve_model_file


def _process(images: list[tuple[str, str]], pipeline: str = "tiny-moths") -> dict:
    return {"pipeline": pipeline, "source_images": [{"id": i, "url": u} for i, u in images]}


def _errors(body: dict) -> dict[str, str]:
    return {e["image_id"]: e["error"] for e in body["errors"]}


def _detected(body: dict) -> list[str]:
    return [d["source_image_id"] for d in body["detections"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- one image's failure is that image's error (item 10) ---


def test_malformed_urls_are_per_image_errors(model: Path, host: ImageHost) -> None:
    good = host.add("/malformed/good.png", png_bytes(1))
    with running(create_app([load_served_model(model)])) as live:
        images = [("good", good), *MALFORMED.items()]
        response = httpx.post(f"{live.url}/process", json=_process(images))
        assert response.status_code == 200, response.text
        assert _detected(response.json()) == ["good"]
        errors = _errors(response.json())
        assert set(errors) == set(MALFORMED)
        assert all(e.startswith("URL refused: malformed URL") for e in errors.values()), errors
        body = {"images": [{"id": i, "url": u} for i, u in images]}
        results = httpx.post(f"{live.url}/v1/classify", json=body).json()["results"]
        assert [r["error"] is None for r in results] == [True, False, False, False]
        assert live.engine.admission.in_flight == 0


def test_a_timed_out_request_stops_its_images_before_releasing_admission(
    model: Path, host: ImageHost
) -> None:
    served = load_served_model(model)
    finished = threading.Event()
    preprocess = served.classifier.preprocess

    def slow_preprocess(image: Image.Image) -> np.ndarray:
        time.sleep(0.8)  # a decode thread cannot be interrupted
        finished.set()
        return preprocess(image)

    served.classifier.preprocess = slow_preprocess  # this instance only
    url = host.add("/timeout/a.png", png_bytes(2))
    with running(create_app([served], ServeOptions(request_timeout=0.2))) as live:
        response = httpx.post(f"{live.url}/process", json=_process([("1", url)]))
        assert response.status_code == 504
        assert finished.is_set()  # the work it admitted was over before it answered
        assert live.engine.admission.in_flight == 0


# --- a model error fails one image, a warm-up failure stops the server (item 14) ---


def test_a_model_error_fails_only_the_image_that_caused_it(
    model: Path, host: ImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    served = load_served_model(model)
    p = served.classifier.metadata.preprocessing
    white = (1 - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    run = served.classifier.model_outputs
    calls = []

    def fails_on_white(batch: np.ndarray) -> tuple:
        calls.append(len(batch))
        if any(np.allclose(image, white[:, None, None]) for image in batch):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bad node")
        return run(batch)

    served.classifier.model_outputs = fails_on_white
    white_png = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(white_png, "PNG")
    images = [(str(i), host.add(f"/model-error/{i}.png", png_bytes(20 + i))) for i in range(3)]
    images.append(("white", host.add("/model-error/white.png", white_png.getvalue())))
    options = ServeOptions(max_batch=8, max_wait_ms=200)
    caplog.set_level(logging.INFO, logger="moths_framework")
    with running(create_app([served], options)) as live:
        calls.clear()
        response = httpx.post(f"{live.url}/process", json=_process(images))
        assert response.status_code == 200, response.text
        body = response.json()
        assert sorted(_detected(body)) == ["0", "1", "2"]
        assert list(_errors(body)) == ["white"] and "RUNTIME_EXCEPTION" not in body["errors"][0]
    assert calls[0] == 4 and sorted(calls[1:]) == [1, 1, 1, 1]  # the batch, then one by one
    assert "RUNTIME_EXCEPTION" in caplog.text  # the detail is in the server's log


def test_warm_up_failure_exits_non_zero_with_one_line(
    model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from moths_framework.cli.serve import main

    def broken(self: OnnxClassifier, batch: np.ndarray) -> tuple:
        raise RuntimeError("CUDA failure 2: out of memory")

    monkeypatch.setattr(OnnxClassifier, "model_outputs", broken)
    result = {}
    args = ["--model", str(model), "--host", "127.0.0.1", "--port", str(_free_port())]
    thread = threading.Thread(target=lambda: result.update(rc=main(args)), daemon=True)
    thread.start()
    thread.join(30)  # bounded; before the fix the server ran on, never ready
    assert not thread.is_alive() and result["rc"] == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "out of memory" in errors[0] and "warm" in errors[0]


# --- memory is bounded by bytes and pixels, not by image count (item 11) ---


def test_json_bodies_have_their_own_small_cap(model: Path) -> None:
    garbage = base64.b64encode(b"\xff" * 5 * 2**20).decode()  # ~7 MB of JSON, under 64 MB
    png = png_bytes(3)
    with running(create_app([load_served_model(model)])) as live:
        big = httpx.post(f"{live.url}/v1/classify", json={"images": [{"b64": garbage}]})
        assert big.status_code == 413 and "JSON" in big.json()["detail"]
        files = [("files", ("a.png", png + b"\0" * 5 * 2**20, "image/png"))]
        multipart = httpx.post(f"{live.url}/v1/classify", files=files)
        assert multipart.status_code == 200, multipart.text  # the multipart cap is 64 MB


def test_a_large_json_body_is_parsed_off_the_event_loop_and_counted_first(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads, validated = [], []
    loads, validate = json.loads, PipelineRequest.model_validate

    def recording_loads(data: bytes, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        return loads(data, **kwargs)

    def recording_validate(data: object, **kwargs: object) -> PipelineRequest:
        validated.append(len(data["source_images"]))
        return validate(data, **kwargs)

    monkeypatch.setattr(json, "loads", recording_loads)
    monkeypatch.setattr(PipelineRequest, "model_validate", recording_validate)
    many = [(f"{i}", f"http://127.0.0.1:9/{i}.jpg") for i in range(20_000)]  # ~0.7 MB
    duplicates = [("x" * 10, url) for _, url in many]  # one distinct image
    with running(create_app([load_served_model(model)])) as live:
        refused = httpx.post(f"{live.url}/process", json=_process(many), timeout=30)
        assert refused.status_code == 413 and "20000 images" in refused.json()["detail"]
        assert validated == []  # refused on the count, before pydantic built 20,000 models
        again = httpx.post(f"{live.url}/process", json=_process(duplicates), timeout=30)
        assert again.status_code == 413  # duplicates are parsed too: they count
        assert threads and all(t is not live.thread for t in threads)


def test_pixel_cap_refuses_large_images_and_drafts_large_jpegs(
    model: Path, host: ImageHost
) -> None:
    flat = io.BytesIO()
    Image.new("RGB", (2000, 2000), "green").save(flat, "PNG")  # 4 MP in a few kB
    jpeg = io.BytesIO()
    Image.linear_gradient("L").resize((2000, 1500)).convert("RGB").save(jpeg, "JPEG")
    images = [
        ("png", host.add("/pixels/flat.png", flat.getvalue())),
        ("jpeg", host.add("/pixels/big.jpg", jpeg.getvalue())),
    ]
    options = ServeOptions(max_pixels=1_000_000)
    with running(create_app([load_served_model(model)], options)) as live:
        body = httpx.post(f"{live.url}/process", json=_process(images)).json()
    assert list(_errors(body)) == ["png"]
    (detection,) = body["detections"]  # the JPEG, decoded at 1/2 scale, reported at full size
    assert detection["bbox"] == {"x1": 0, "y1": 0, "x2": 2000, "y2": 1500}


def test_compressed_responses_are_not_inflated_past_the_image_cap(
    model: Path, host: ImageHost
) -> None:
    png = png_bytes(4)
    host.add("/gzip/ok.png", gzip.compress(png))
    host.headers["/gzip/ok.png"] = {"Content-Encoding": "gzip"}
    host.add("/gzip/bomb.png", gzip.compress(png + b"\0" * 60 * 2**20))  # 61 kB -> 60 MiB
    host.headers["/gzip/bomb.png"] = {"Content-Encoding": "gzip"}
    images = [("ok", host.url("/gzip/ok.png")), ("bomb", host.url("/gzip/bomb.png"))]
    options = ServeOptions(max_image_bytes=2**20)
    with running(create_app([load_served_model(model)], options)) as live:
        body = httpx.post(f"{live.url}/process", json=_process(images)).json()
    asked = {path: headers for path, headers in host.requests}
    assert asked["/gzip/bomb.png"].get("Accept-Encoding") == "identity"
    assert _detected(body) == ["ok"] and list(_errors(body)) == ["bomb"]


def test_fetched_bytes_wait_for_room_in_the_budget(model: Path, host: ImageHost) -> None:
    served = load_served_model(model)
    preprocess = served.classifier.preprocess

    def slow_preprocess(image: Image.Image) -> np.ndarray:
        time.sleep(0.05)  # the decoder lags behind the downloads
        return preprocess(image)

    served.classifier.preprocess = slow_preprocess
    datas = [png_bytes(30 + i, 120, 100) for i in range(8)]  # ~36 kB each
    images = [(str(i), host.add(f"/budget/{i}.png", d)) for i, d in enumerate(datas)]
    budget = 2 * max(len(d) for d in datas)
    options = ServeOptions(decode_workers=1, fetch_budget_bytes=budget, max_image_bytes=budget)
    with running(create_app([served], options)) as live:
        body = httpx.post(f"{live.url}/process", json=_process(images)).json()
        assert sorted(_detected(body)) == sorted(i for i, _ in images)
        assert 0 < live.engine.fetch_budget.peak <= budget
        assert live.engine.fetch_budget.held == 0


# --- the fetch clock starts with a connection; clients share connections (item 12) ---


def test_a_big_batch_neither_times_out_its_tail_nor_starves_another_client(
    model: Path, host: ImageHost
) -> None:
    big = [(f"a{i}", host.add(f"/fair/a{i}.png", png_bytes(i % 5), delay=0.3)) for i in range(96)]
    small = [("b", host.add("/fair/b.png", png_bytes(9), delay=0.3))]
    options = ServeOptions(fetch_timeout=0.6, max_wait_ms=1)

    async def clients(url: str) -> tuple[dict, float]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            first = asyncio.create_task(client.post("/process", json=_process(big)))
            await asyncio.sleep(0.15)  # the big batch holds its connections by now
            started = time.monotonic()
            other = await client.post("/process", json=_process(small))
            waited = time.monotonic() - started
            assert _detected(other.json()) == ["b"]
            return (await first).json(), waited

    with running(create_app([load_served_model(model)], options)) as live:
        body, waited = asyncio.run(clients(live.url))
    assert _errors(body) == {}  # no image timed out waiting for a connection
    assert waited < 0.75  # one image's fetch, not the big batch's queue


# --- fetch failures do not map the internal network (item 13) ---


def test_fetch_failures_look_alike_to_the_client_and_are_logged(
    model: Path, host: ImageHost, caplog: pytest.LogCaptureFixture
) -> None:
    cases = {
        "refused": f"http://127.0.0.1:{_free_port()}/a.png",
        "missing": host.url("/alike/missing.png"),
        "text": host.add("/alike/notes.png", b"<html>admin console</html>"),
        "slow": host.add("/alike/slow.png", png_bytes(6), delay=2.0),
    }
    caplog.set_level(logging.INFO, logger="moths_framework")
    options = ServeOptions(fetch_timeout=0.5)
    with running(create_app([load_served_model(model)], options)) as live:
        body = httpx.post(f"{live.url}/process", json=_process(list(cases.items()))).json()
    errors = _errors(body)
    assert set(errors) == set(cases)
    assert len({_REF.sub("", e) for e in errors.values()}) == 1  # one message, refs aside
    assert len({_REF.search(e).group() for e in errors.values()}) == len(cases)
    for detail in ("Connect", "HTTP 404", "not-an-image", "timed out"):
        assert detail in caplog.text, detail
    for error in errors.values():
        assert _REF.search(error).group()[5:-1] in caplog.text  # the ref finds the log line


def test_deny_private_networks_refuses_loopback_before_connecting(
    model: Path, host: ImageHost
) -> None:
    url = host.add("/private/a.png", png_bytes(7))
    named = host.url("/private/b.png", host="localhost")
    options = ServeOptions(deny_private_networks=True)
    with running(create_app([load_served_model(model)], options)) as live:
        body = httpx.post(f"{live.url}/process", json=_process([("ip", url), ("name", named)]))
    assert set(_errors(body.json())) == {"ip", "name"}
    assert not host.asked_for("/private/a.png") and not host.asked_for("/private/b.png")
