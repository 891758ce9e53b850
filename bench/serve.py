"""Benchmark ``moths-serve`` (AMI ``/process``) against ``moths-infer``'s offline throughput.

Builds a model and images as ``bench/infer.py`` does (timm ``efficientnet_b0``,
random weights, 224x224; ``--images`` camera-like 640x480 JPEGs), but on a
checklist the size of the Dutch one: ``--species`` 2,700 species on the four
ranks species, group, family, genus (:func:`checklist_csv`), because
``/process`` answers every score and logit of every rank. All in a temporary
directory. Then, in the same run and on the same images:

(a) offline: ``OnnxClassifier.predict_iter`` as ``moths-infer`` runs it
    (batch 32), and its process CPU time per image;
(b) served: ``moths-serve`` in a subprocess on 127.0.0.1 (``--max-batch``,
    ``--max-wait-ms``), images fetched by URL from a local keep-alive
    ``http.server`` on 127.0.0.1, as Antenna sends them; ``c`` concurrent
    clients post ``/process`` requests of ``--per-request`` images each until
    every image was sent once; and the server process's CPU time (user +
    system, all its threads) per image.

After one untimed pass of each, the two alternate: for each concurrency 1, 8,
32, ``--rounds`` pairs of one offline and one served pass (who goes first
alternates), so both see the same load on a shared machine; a concurrency's
figure is the median of its rounds, its share of offline the median of the
pairs' ratios (each round is printed).

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
from dataclasses import dataclass
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


class Offline:
    """``moths-infer``'s loop: ``predict_iter`` at batch 32 over the images, timed pass by pass."""

    def __init__(self, model: Path, paths: list[str], threads: int) -> None:
        self.classifier = OnnxClassifier.from_file(model, providers="cpu", num_threads=threads)
        self.paths = paths

    def run(self) -> tuple[float, float]:
        """One pass: (images per second, CPU seconds per image of this process)."""
        started, cpu_started = time.perf_counter(), time.process_time()
        for prediction in self.classifier.predict_iter(self.paths, top_k=5, batch_size=32):
            if not prediction.ok:
                raise RuntimeError(prediction.error)
        seconds = time.perf_counter() - started
        return len(self.paths) / seconds, (time.process_time() - cpu_started) / len(self.paths)


@dataclass
class Served:
    """``c`` clients against the running server, timed pass by pass."""

    url: str
    pid: int
    slug: str
    image_urls: list[str]
    per_request: int

    def run(self, clients: int) -> tuple[float, float, list[float], float]:
        """One pass: (images per second, server CPU seconds per image, request latencies,
        CPU seconds per image of this process: the clients and the image server)."""
        cpu_started, own_started = process_cpu_seconds(self.pid), time.process_time()
        seconds, latencies = asyncio.run(
            load(self.url, self.slug, self.image_urls, clients, self.per_request)
        )
        count = len(self.image_urls)
        cpu = (process_cpu_seconds(self.pid) - cpu_started) / count
        return count / seconds, cpu, latencies, (time.process_time() - own_started) / count


def paired_rounds(offline: Offline, served: Served, clients: int, rounds: int) -> dict:
    """``rounds`` pairs of an offline and a served pass at ``clients``, alternating who is first."""
    pairs, offline_cpu, served_cpu, latencies, own = [], [], [], [], []
    for round_ in range(rounds):
        passes = {}
        for side in ("offline", "served") if round_ % 2 == 0 else ("served", "offline"):
            if side == "offline":
                passes[side], cpu = offline.run()
                offline_cpu.append(cpu)
            else:
                passes[side], cpu, times, client_cpu = served.run(clients)
                served_cpu.append(cpu)
                latencies += times
                own.append(client_cpu)
        pairs.append((passes["served"], passes["offline"]))
        print(
            f"  c={clients} round {round_ + 1}: served {passes['served']:.1f} img/s, "
            f"offline {passes['offline']:.1f} img/s, {passes['served'] / passes['offline']:.0%}; "
            f"CPU per image: server {served_cpu[-1] * 1e3:.1f} ms, offline "
            f"{offline_cpu[-1] * 1e3:.1f} ms, bench clients and image server {own[-1] * 1e3:.1f} ms"
        )
    return {
        "rate": statistics.median(p[0] for p in pairs),
        "offline": [p[1] for p in pairs],
        "ratio": statistics.median(p[0] / p[1] for p in pairs),
        "p99": percentile(latencies, 99),
        "cpu": statistics.median(served_cpu),
        "offline_cpu": offline_cpu,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="640x480 JPEGs")
    parser.add_argument("--species", type=int, default=SPECIES, help="species in the checklist")
    parser.add_argument("--per-request", type=int, default=4, help="images per /process request")
    parser.add_argument(
        "--rounds", type=int, default=3, help="pairs of offline and served passes per concurrency"
    )
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
        offline = Offline(onnx_file, paths, args.threads)
        results = {}
        with image_host(tmp / "images") as images, serving(onnx_file, args) as (url, pid):
            slug = httpx.get(f"{url}/readyz").json()["status"][0]
            urls = [f"{images}/{Path(p).name}" for p in paths]
            served = Served(url, pid, slug, urls, args.per_request)
            offline.run()  # warm-up passes
            served.run(8)
            for clients in CONCURRENCY:
                results[clients] = paired_rounds(offline, served, clients, args.rounds)
    offline_cpu = statistics.median(c for r in results.values() for c in r["offline_cpu"])
    offline_rate = statistics.median(rate for r in results.values() for rate in r["offline"])
    print(f"offline (moths-infer): {offline_rate:.1f} img/s")
    for clients, r in results.items():
        print(
            f"serve: c={clients} {r['rate']:.1f} img/s, p99 {r['p99'] * 1e3:.0f} ms, "
            f"{r['ratio']:.0%} of offline, CPU per image {r['cpu'] * 1e3:.1f} ms "
            f"vs {offline_cpu * 1e3:.1f} ms offline ({args.species} classes)"
        )


if __name__ == "__main__":
    main()
