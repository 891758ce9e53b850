"""``moths-serve`` as a command: two models, a token, an allow-list and caps, under garbage load.

The console script runs in a subprocess on a free loopback port; its log
(stderr) is read back to check that what clients are not told is logged.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.image_host import MALFORMED, ImageHost
from helpers.image_samples import png_bytes

TOKEN = "command-test-token"
GARBAGE_CLIENTS, GARBAGE_BYTES, LOAD_SECONDS = 16, 64 * 2**20, 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def post(self, path: str, body: dict) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def command(serve_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Command]:
    folder = tmp_path_factory.mktemp("command")
    second = shutil.copy(serve_model_file, folder / "second-moths.onnx")
    (folder / "token").write_text(TOKEN + "\n")
    port = _free_port()
    script = Path(sys.executable).with_name("moths-serve")
    args = [
        str(script), "--model", str(serve_model_file), "--model", str(second),
        "--host", "127.0.0.1", "--port", str(port), "--allow-hosts", "127.0.0.1",
        "--token-file", str(folder / "token"), "--max-body-mb", "1", "--max-image-mb", "0.05",
        "--fetch-timeout", "5", "--providers", "cpu", "--threads", "1",
    ]  # fmt: skip
    log = folder / "stderr.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:  # bounded
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"moths-serve did not become ready:\n{log.read_text()}")
        yield Command(process, url, log)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _process(pipeline: str, images: list[tuple[str, str]]) -> dict:
    return {"pipeline": pipeline, "source_images": [{"id": i, "url": u} for i, u in images]}


def _errors(body: dict) -> dict[str, str]:
    return {e["image_id"]: e["error"] for e in body["errors"]}


def test_refusals_are_per_image_and_logged(command: Command, host: ImageHost) -> None:
    good = host.add("/command/good.png", png_bytes(1))
    host.add("/command/elsewhere.png", png_bytes(2))
    redirect = host.redirect("/command/moved", host.url("/command/elsewhere.png", "localhost"))
    large = host.add("/command/large.png", png_bytes(3, 200, 200))  # ~120 kB, cap 50 kB
    images = [("good", good), ("redirect", redirect), ("large", large), *MALFORMED.items()]
    for pipeline in ("tiny-moths", "second-moths"):
        response = command.post("/process", _process(pipeline, images))
        assert response.status_code == 200, response.text
        body = response.json()
        assert [d["source_image_id"] for d in body["detections"]] == ["good"]
        assert set(_errors(body)) == {"redirect", "large", *MALFORMED}
    assert not host.asked_for("/command/elsewhere.png")  # the redirect was not followed
    log = command.log.read_text()
    assert "'localhost' is not in --allow-hosts" in log and "over 52428" in log
    assert command.process.poll() is None


def _garbage_client(port: int, number: int, stop: threading.Event) -> None:
    """Post 64 MB of garbage, again and again until ``stop``: half declared, half chunked."""
    chunk = bytes(range(256)) * 1024  # 256 kB
    declared = number % 2 == 0
    length = f"Content-Length: {GARBAGE_BYTES}" if declared else "Transfer-Encoding: chunked"
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\n{length}\r\n\r\n"
    ).encode()
    framed = chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk)
    while not stop.is_set():  # bounded by the caller's LOAD_SECONDS
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(2)
            sock.sendall(head)
            for _ in range(GARBAGE_BYTES // len(chunk)):
                if stop.is_set():
                    break
                sock.sendall(framed)  # raises once the server has answered 413 and closed


def test_livez_answers_within_a_second_while_clients_send_garbage(command: Command) -> None:
    port = int(command.url.rsplit(":", 1)[1])
    stop = threading.Event()
    clients = [
        threading.Thread(target=_garbage_client, args=(port, n, stop), daemon=True)
        for n in range(GARBAGE_CLIENTS)
    ]
    for client in clients:
        client.start()
    latencies = []
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert httpx.get(f"{command.url}/livez", timeout=5).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    assert len(latencies) >= 5 and max(latencies) < 1.0, latencies
    assert command.process.poll() is None
