"""Benchmark ``moths-serve`` (AMI ``/process``) against ``moths-infer``'s offline throughput.

Builds a model and images as ``bench/infer.py`` does (timm ``efficientnet_b0``,
random weights, 224x224; ``--images`` camera-like 640x480 JPEGs), but on a
checklist the size of the Dutch one: ``--species`` 2,700 species on the four
ranks species, group, family, genus (:func:`checklist_csv`), because
``/process`` answers every score and logit of every rank. All in a temporary
directory. Then, in the same run and on the same images:

(a) offline: ``OnnxClassifier.predict_iter`` as ``moths-infer`` runs it (batch 32),
    the median of ``--rounds`` timed passes after one untimed pass, and its
    process CPU time per image;
(b) served: ``moths-serve`` in a subprocess on 127.0.0.1 (``--max-batch``,
    ``--max-wait-ms``), images fetched by URL from a local ``http.server`` on
    127.0.0.1, as Antenna sends them; ``c`` concurrent clients post ``/process``
    requests of ``--per-request`` images each until every image was sent once;
    one untimed warm-up pass, then one timed pass per concurrency 1, 8, 32,
    and the server process's CPU time (user + system, all its threads) per
    image over each pass.

Both use ``--threads`` ONNX Runtime threads, CPU provider. Run:
``.venv/bin/python bench/serve.py [--images 256] [--per-request 4] [--threads N]``.
The last line is ``serve: c=32 X img/s, p99 Y ms, Z% of offline, CPU per image
A ms vs B ms offline (2700 classes)``.
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
import infer  # bench/infer.py: the same backbone, images and export
import orjson
import torch
from moths_plugin_timm import TimmBackbone
from PIL import Image
from torch import nn

from moths_framework.data.transforms import eval_transform
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.inference import OnnxClassifier
from moths_framework.model.lightning import MothsClassifier

CONCURRENCY = (1, 8, 32)
SPECIES = 2700  # about the Dutch checklist


def checklist_csv(path: Path, species: int) -> Path:
    """A hierarchy CSV shaped like the Dutch moth checklist, scaled to ``species``.

    Per 2,700 species: 900 genera of 3 species, 80 families, 2 groups
    (micro, macro): the class counts per rank, and so the size of a response,
    of the real list.
    """
    genera = max(1, species // 3)
    families = max(1, round(80 * species / 2700))
    rows = ["species,group,family,genus"]
    for s in range(species):
        genus = s * genera // species
        family = genus * families // genera
        group = "micro" if family < 0.7 * families else "macro"
        rows.append(f"Genus{genus:04d} sp{s:04d},{group},Family{family:02d},Genus{genus:04d}")
    path.write_text("\n".join(rows) + "\n")
    return path


def build_model(tmp: Path, images: list[str], species: int) -> MothsClassifier:
    """``infer.BACKBONE`` on :func:`checklist_csv`, random weights, batch-norm statistics
    from ``images`` (as ``infer.build_model``: else every image gets the same logits)."""
    hierarchy = CsvHierarchy(checklist_csv(tmp / "hierarchy.csv", species)).build()
    torch.manual_seed(0)
    backbone = TimmBackbone(name=infer.BACKBONE, pretrained=False)
    model = MothsClassifier(backbone, hierarchy=hierarchy)
    transform = eval_transform(model.preprocessing)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images[:16]])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        model.train()(batch)
    return model.eval()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def image_host(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 over keep-alive HTTP/1.1; yields the base URL."""
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
    protocol_version = "HTTP/1.1"  # keep-alive, as the object stores Antenna's images live in

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(model: Path, args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """``moths-serve`` in a subprocess on a free loopback port, until ready: (URL, pid);
    stopped after."""
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
        yield url, process.pid
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
                answer = orjson.loads(response.content)  # a fast client: time the server
                if len(answer["detections"]) != len(urls):
                    raise RuntimeError(f"request {number}: {answer.get('errors')}")

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(clients)))
    return time.perf_counter() - started, latencies


def offline_rate(model: Path, paths: list[str], args: argparse.Namespace) -> tuple[float, float]:
    """``moths-infer``'s throughput: predict_iter at batch 32, median of ``--rounds``;
    and its CPU seconds per image (this process, all threads), median too."""
    classifier = OnnxClassifier.from_file(model, providers="cpu", num_threads=args.threads)
    rates, cpu = [], []
    for round_ in range(args.rounds + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        for prediction in classifier.predict_iter(paths, top_k=5, batch_size=32):
            if not prediction.ok:
                raise RuntimeError(prediction.error)
        if round_:  # the first pass warms up
            rates.append(len(paths) / (time.perf_counter() - started))
            cpu.append((time.process_time() - cpu_started) / len(paths))
    print(f"  offline img/s per round: {', '.join(f'{r:.1f}' for r in rates)}")
    return statistics.median(rates), statistics.median(cpu)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="640x480 JPEGs")
    parser.add_argument("--species", type=int, default=SPECIES, help="species in the checklist")
    parser.add_argument("--per-request", type=int, default=4, help="images per /process request")
    parser.add_argument("--rounds", type=int, default=3, help="timed offline passes")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    args = parser.parse_args(argv)
    numbers = (args.images, args.species, args.per_request, args.rounds, args.threads)
    if min(*numbers, args.max_batch) < 1:
        parser.error(
            "--images, --species, --per-request, --rounds, --threads, --max-batch must be >= 1"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="moths-bench-serve-") as name:
        tmp = Path(name)
        paths = infer.write_images(tmp / "images", args.images)
        model = build_model(tmp, paths, args.species)
        classes = sum(model.hierarchy.num_classes().values())
        onnx_file = infer.export(model, tmp, paths)
        print(
            f"{infer.BACKBONE}, {args.species} species ({classes} classes on "
            f"{len(model.hierarchy.ranks)} ranks), {args.images} images 640x480, "
            f"{args.per_request} per request, {args.threads} threads, "
            f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms"
        )
        offline, offline_cpu = offline_rate(onnx_file, paths, args)
        lines = []
        with image_host(tmp / "images") as images, serving(onnx_file, args) as (url, pid):
            urls = [f"{images}/{Path(p).name}" for p in paths]
            slug = httpx.get(f"{url}/readyz").json()["status"][0]
            asyncio.run(load(url, slug, urls, 8, args.per_request))  # warm-up pass
            for clients in CONCURRENCY:
                cpu_started = process_cpu_seconds(pid)
                seconds, latencies = asyncio.run(load(url, slug, urls, clients, args.per_request))
                cpu = (process_cpu_seconds(pid) - cpu_started) / len(urls)
                rate = len(urls) / seconds
                p50, p99 = percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
                print(f"  c={clients}: {len(latencies)} requests, p50 {p50:.0f} ms")
                lines.append(
                    f"serve: c={clients} {rate:.1f} img/s, p99 {p99:.0f} ms, "
                    f"{rate / offline:.0%} of offline, CPU per image {cpu * 1e3:.1f} ms "
                    f"vs {offline_cpu * 1e3:.1f} ms offline ({args.species} classes)"
                )
    print(f"offline (moths-infer): {offline:.1f} img/s")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
