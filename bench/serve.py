"""Benchmark ``moths-serve`` (AMI ``/process``) against ``moths-infer``'s offline throughput.

Builds the same model and images as ``bench/infer.py`` (timm ``efficientnet_b0``,
random weights, 224x224, 50 species; ``--images`` camera-like 640x480 JPEGs),
all in a temporary directory. Then, in the same run and on the same images:

(a) offline: ``OnnxClassifier.predict_iter`` as ``moths-infer`` runs it (batch 32),
    the median of ``--rounds`` timed passes after one untimed pass;
(b) served: ``moths-serve`` in a subprocess on 127.0.0.1 (``--max-batch``,
    ``--max-wait-ms``), images fetched by URL from a local ``http.server`` on
    127.0.0.1, as Antenna sends them; ``c`` concurrent clients post ``/process``
    requests of ``--per-request`` images each until every image was sent once;
    one untimed warm-up pass, then one timed pass per concurrency 1, 8, 32.

Both use ``--threads`` ONNX Runtime threads, CPU provider. Run:
``.venv/bin/python bench/serve.py [--images 256] [--per-request 4] [--threads N]``.
The last line is ``serve: c=32 X img/s, p99 Y ms, Z% of offline``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.server
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import infer  # bench/infer.py: the same model and images

from moths_framework.inference import OnnxClassifier

CONCURRENCY = (1, 8, 32)


@contextlib.contextmanager
def image_host(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(model: Path, args: argparse.Namespace) -> Iterator[str]:
    """``moths-serve`` in a subprocess on a free loopback port, until ready; stopped after."""
    port = _free_port()
    command = [
        sys.executable, "-m", "moths_framework.cli.serve", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--providers", "cpu",
        "--threads", str(args.threads), "--max-batch", str(args.max_batch),
        "--max-wait-ms", str(args.max_wait_ms),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"moths-serve exited: {process.stderr.read().decode()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise TimeoutError("moths-serve not ready in 120 s")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # graceful: requests in flight finish
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def load(url: str, slug: str, image_urls: list[str], clients: int, per_request: int):
    """Send every image once in requests of ``per_request``; (seconds, request latencies)."""
    requests = [image_urls[i : i + per_request] for i in range(0, len(image_urls), per_request)]
    pending = iter(enumerate(requests))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def client_loop() -> None:
            for number, urls in pending:  # shared iterator: each request is sent once
                body = {
                    "pipeline": slug,
                    "source_images": [
                        {"id": f"{number}-{j}", "url": u} for j, u in enumerate(urls)
                    ],
                }
                started = time.perf_counter()
                response = await client.post("/process", json=body)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                detections = response.json()["detections"]
                if len(detections) != len(urls):
                    raise RuntimeError(f"request {number}: {response.json().get('errors')}")

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(clients)))
    return time.perf_counter() - started, latencies


def offline_rate(model: Path, paths: list[str], args: argparse.Namespace) -> float:
    """``moths-infer``'s throughput: predict_iter at batch 32, median of ``--rounds``."""
    classifier = OnnxClassifier.from_file(model, providers="cpu", num_threads=args.threads)
    rates = []
    for round_ in range(args.rounds + 1):
        started = time.perf_counter()
        for prediction in classifier.predict_iter(paths, top_k=5, batch_size=32):
            if not prediction.ok:
                raise RuntimeError(prediction.error)
        if round_:  # the first pass warms up
            rates.append(len(paths) / (time.perf_counter() - started))
    print(f"  offline img/s per round: {', '.join(f'{r:.1f}' for r in rates)}")
    return statistics.median(rates)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="640x480 JPEGs")
    parser.add_argument("--per-request", type=int, default=4, help="images per /process request")
    parser.add_argument("--rounds", type=int, default=3, help="timed offline passes")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    if min(args.images, args.per_request, args.rounds, args.threads, args.max_batch) < 1:
        parser.error("--images, --per-request, --rounds, --threads, --max-batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="moths-bench-serve-") as name:
        tmp = Path(name)
        paths = infer.write_images(tmp / "images", args.images)
        model = infer.export(infer.build_model(tmp, paths), tmp, paths)
        print(
            f"{infer.BACKBONE}, {args.images} images 640x480, {args.per_request} per request, "
            f"{args.threads} threads, max batch {args.max_batch}, max wait {args.max_wait_ms} ms"
        )
        offline = offline_rate(model, paths, args)
        lines = []
        with image_host(tmp / "images") as images, serving(model, args) as url:
            urls = [f"{images}/{Path(p).name}" for p in paths]
            slug = httpx.get(f"{url}/readyz").json()["status"][0]
            asyncio.run(load(url, slug, urls, 8, args.per_request))  # warm-up pass
            for clients in CONCURRENCY:
                seconds, latencies = asyncio.run(load(url, slug, urls, clients, args.per_request))
                rate = len(urls) / seconds
                p50, p99 = percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
                print(f"  c={clients}: {len(latencies)} requests, p50 {p50:.0f} ms")
                lines.append(
                    f"serve: c={clients} {rate:.1f} img/s, p99 {p99:.0f} ms, "
                    f"{rate / offline:.0%} of offline"
                )
    print(f"offline (moths-infer): {offline:.1f} img/s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
