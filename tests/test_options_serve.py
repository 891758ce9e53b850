"""moths-serve's options, each by its effect: the command line is parsed by ``main`` as
the console script does, its uvicorn config is caught before it would run, and that
config's app is then served by a real uvicorn on a free loopback port in a thread.

The options tested elsewhere are not repeated: --max-image-mb, --max-body-mb,
--allow-hosts, --token-file, --host, --port (test_serve_command.py),
--limit-concurrency, --max-json-mb, --max-pixels, --fetch-per-request,
--deny-private-networks (test_serve_cli.py, test_network_policy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import uvicorn
from helpers.image_host import ImageHost
from helpers.image_samples import png_bytes

from moths_framework.cli.serve import main
from moths_framework.inference.providers import CPU, CUDA

SLUG = "tiny-moths"
_REAL_SERVER = uvicorn.Server


def no_server(monkeypatch: pytest.MonkeyPatch) -> dict[str, uvicorn.Config]:
    """From now on ``main`` runs no server; the config it would run lands in the dict."""
    caught: dict[str, uvicorn.Config] = {}

    class Catch:
        def __init__(self, config: uvicorn.Config) -> None:
            caught["config"] = config

        def run(self) -> None:
            pass

    monkeypatch.setattr(uvicorn, "Server", Catch)
    return caught


def served_config(model_file: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> uvicorn.Config:
    """The uvicorn config ``moths-serve --model MODEL ARGS`` would run (nothing runs)."""
    caught = no_server(monkeypatch)
    assert main(["--model", str(model_file), *args]) == 0
    return caught["config"]


def served(model_file: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Live:
    """``moths-serve --model MODEL ARGS``, ready to run with its own uvicorn config."""
    return Live(served_config(model_file, monkeypatch, *args))


class Live:
    """The command's own uvicorn config, served on a free loopback port in a thread."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.app = config.app
        self.server = _REAL_SERVER(config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    @property
    def classifier(self):  # noqa: ANN201 (OnnxClassifier)
        return self.app.state.engine.models[SLUG].classifier

    def post(self, files: list[bytes], timeout: float = 30) -> httpx.Response:
        upload = [("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]
        return httpx.post(f"{self.url}/v1/classify", files=upload, timeout=timeout)

    @contextlib.contextmanager
    def running(self) -> Iterator[Live]:
        """Start, wait until ready (models warmed up), stop on leaving."""
        self.thread.start()
        try:
            deadline = time.monotonic() + 30
            while not self._ready():
                assert time.monotonic() < deadline, "moths-serve did not become ready in 30 s"
                time.sleep(0.05)
            yield self
        finally:
            self.server.should_exit = True
            self.thread.join(timeout=30)
            self.sock.close()

    def _ready(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        return False


def record_batches(server: Live) -> list[int]:
    """The size of every model call of the server (set before it starts: its batcher
    takes the function then)."""
    sizes: list[int] = []
    run = server.classifier.model_outputs

    def recording(batch: np.ndarray) -> tuple:
        sizes.append(len(batch))
        return run(batch)

    server.classifier.model_outputs = recording  # this instance only; its batcher calls it
    return sizes


def slow_preprocess(server: Live, seconds: float) -> dict[str, int]:
    """Every decode takes ``seconds``; returns {"now", "peak"} decodes running at once."""
    preprocess = server.classifier.preprocess
    counts = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(image):  # noqa: ANN001, ANN202
        with lock:
            counts["now"] += 1
            counts["peak"] = max(counts["peak"], counts["now"])
        try:
            time.sleep(seconds)
            return preprocess(image)
        finally:
            with lock:
                counts["now"] -= 1

    server.classifier.preprocess = slow
    return counts


def test_max_batch_caps_every_model_call(model_file: Path, monkeypatch) -> None:
    server = served(model_file, monkeypatch, "--max-batch", "2", "--max-wait-ms", "500")
    sizes = record_batches(server)
    with server.running():
        sizes.clear()  # the warm-up's call
        response = server.post([png_bytes(i) for i in range(5)])
    assert response.status_code == 200, response.text
    assert [r.get("error") for r in response.json()["results"]] == [None] * 5
    assert sum(sizes) == 5 and max(sizes) == 2, sizes  # batched, never over --max-batch


def test_max_wait_ms_lets_a_later_request_join_the_batch(model_file: Path, monkeypatch) -> None:
    """The first image waits up to --max-wait-ms for others: a request sent 0.2 s later
    shares its model call (with the default 10 ms it would get a call of its own)."""
    server = served(model_file, monkeypatch, "--max-wait-ms", "2000")
    sizes = record_batches(server)

    async def two_requests(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def one(seed: int, delay: float) -> httpx.Response:
                await asyncio.sleep(delay)
                files = [("files", ("a.png", png_bytes(seed), "image/png"))]
                return await client.post("/v1/classify", files=files)

            return await asyncio.gather(one(1, 0.0), one(2, 0.2))

    with server.running():
        sizes.clear()
        responses = asyncio.run(two_requests(server.url))
    assert [r.status_code for r in responses] == [200, 200]
    assert sizes == [2]


def test_max_in_flight_refuses_a_request_with_more_images(model_file: Path, monkeypatch) -> None:
    with served(model_file, monkeypatch, "--max-in-flight", "2").running() as server:
        assert server.post([png_bytes(1), png_bytes(2)]).status_code == 200
        refused = server.post([png_bytes(i) for i in range(3)])
    assert refused.status_code == 413 and "at most 2" in refused.text


def test_request_timeout_answers_504(model_file: Path, monkeypatch) -> None:
    with served(model_file, monkeypatch, "--request-timeout", "0.3").running() as server:
        slow_preprocess(server, 1.0)
        started = time.monotonic()
        response = server.post([png_bytes(1)])
        waited = time.monotonic() - started
    assert response.status_code == 504 and "over 0.3 s" in response.text
    assert waited < 5  # the decode thread is waited for; the default would be 120 s


def test_decode_workers_is_the_number_of_images_decoded_at_once(
    model_file: Path, monkeypatch
) -> None:
    """9 is over the default on any machine (min(8, cores))."""
    with served(model_file, monkeypatch, "--decode-workers", "9").running() as server:
        counts = slow_preprocess(server, 0.5)
        response = server.post([png_bytes(i) for i in range(12)])
    assert response.status_code == 200, response.text
    assert counts["peak"] == 9


def test_fetch_connections_is_the_number_of_downloads_at_once(
    model_file: Path, monkeypatch, host: ImageHost
) -> None:
    urls = [host.add(f"/connections/{i}.png", png_bytes(i), delay=0.4) for i in range(3)]
    images = [{"id": str(i), "url": url} for i, url in enumerate(urls)]
    with served(model_file, monkeypatch, "--fetch-connections", "1").running() as server:
        started = time.monotonic()
        body = {"pipeline": SLUG, "source_images": images}
        response = httpx.post(f"{server.url}/process", json=body, timeout=30)
        waited = time.monotonic() - started
    assert response.status_code == 200 and len(response.json()["detections"]) == 3
    assert waited >= 3 * 0.4  # one after another (at once: about 0.4 s)


def test_body_budget_mb_refuses_a_body_that_does_not_fit_beside_one_held(
    model_file: Path, monkeypatch
) -> None:
    big = png_bytes(7, 400, 400)  # ~480 kB of noise: two do not fit in 0.75 MiB
    assert 0.375 * 2**20 < len(big) < 0.75 * 2**20
    args = ["--max-body-mb", "0.75", "--body-budget-mb", "0.75"]
    upload = [("files", ("a.png", big, "image/png"))]
    with served(model_file, monkeypatch, *args).running() as server:
        slow_preprocess(server, 1.5)  # the first request holds its body meanwhile
        with httpx.Client(base_url=server.url, timeout=30) as client:
            holding = threading.Thread(target=client.post, args=("/v1/classify",),
                                       kwargs={"files": upload}, daemon=True)  # fmt: skip
            holding.start()
            time.sleep(0.5)
            refused = client.post("/v1/classify", files=upload)
            holding.join(30)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "budget" in refused.text


def test_graceful_timeout_bounds_the_wait_for_requests_in_flight(
    model_file: Path, monkeypatch
) -> None:
    """Stopping waits --graceful-timeout for a request in flight, not until it ends."""
    server = served(model_file, monkeypatch, "--graceful-timeout", "0.5")
    with server.running():
        counts = slow_preprocess(server, 5.0)
        client = threading.Thread(target=server.post, args=([png_bytes(1)],), daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while counts["peak"] == 0:  # until the request is in flight (bounded)
            assert time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        server.server.should_exit = True  # what SIGTERM does
        server.thread.join(30)
        stopped_after = time.monotonic() - started
    assert not server.thread.is_alive()
    assert stopped_after < 3.5, stopped_after  # the request would take 5 s


def test_threads_sets_onnx_runtime_intra_op_threads(model_file: Path, monkeypatch) -> None:
    config = served_config(model_file, monkeypatch, "--threads", "3")
    session = config.app.state.engine.models[SLUG].classifier.session
    assert session.get_session_options().intra_op_num_threads == 3


def test_providers_cpu_runs_on_cpu_and_an_unavailable_one_is_one_line(
    model_file: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = served_config(model_file, monkeypatch, "--providers", "cpu")
    assert config.app.state.engine.models[SLUG].classifier.provider == CPU
    assert f"({CPU})" in capsys.readouterr().out  # the pipeline line names it
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no unavailable provider to name")
    assert main(["--model", str(model_file), "--providers", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moths-serve: error: ") and "\n" not in err
    assert "cuda not available" in err and "onnxruntime-gpu" in err


@pytest.mark.parametrize(
    ("flag", "value", "field", "expected"),
    [
        ("--fetch-timeout", "2.5", "fetch_timeout", 2.5),
        ("--fetch-budget-mb", "40", "fetch_budget_bytes", 40 * 2**20),
    ],
)
def test_fetch_options_reach_the_engine(
    model_file: Path, monkeypatch, flag: str, value: str, field: str, expected: float
) -> None:
    """Their effects are tested on ServeOptions (test_serve.py, test_serve_hostile.py)."""
    config = served_config(model_file, monkeypatch, flag, value)
    assert getattr(config.app.state.engine.options, field) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--request-timeout", "0"],
        ["--fetch-timeout", "-1"],
        ["--graceful-timeout", "-5"],
        ["--decode-workers", "0"],
        ["--decode-workers", "-1"],
        ["--threads", "-1"],
        ["--max-image-mb", "0"],
        ["--max-json-mb", "0"],
        ["--max-body-mb", "-1", "--body-budget-mb", "1"],
    ],
)
def test_values_that_cannot_work_are_one_line_and_exit_2(
    model_file: Path, monkeypatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Checked before any server starts (they used to start one that refused every
    request, or died in its start-up with a traceback)."""
    caught = no_server(monkeypatch)
    assert main(["--model", str(model_file), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moths-serve: error: ") and "\n" not in err
    assert args[0] in err and "config" not in caught
