"""Running moths-worker's PullWorker in-process against an :class:`AntennaServer`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from helpers.antenna_server import TOKEN, AntennaServer
from helpers.paths import TEST_DATA
from moths_framework.serve import ServedModel, ServeOptions
from moths_framework.worker import AntennaClient, Backoff, PullWorker, WorkerSettings
from moths_framework.worker.antenna_client import api_root

FAST = Backoff(first=0.01, longest=0.05)


def demo_model() -> ServedModel:
    """The committed zoo demo classifier (offline), on one CPU thread."""
    from moths_framework.serve import load_served_model
    from moths_framework.zoo import resolve

    path = resolve("zoo:nl-moths-demo")
    return load_served_model(path, source="zoo:nl-moths-demo", providers="cpu", num_threads=1)


def moth_images(count: int) -> list[Path]:
    """Committed moth photos (test_data/image_folder is made by moths-prepare, not committed)."""
    photos = sorted((TEST_DATA / "source_a").glob("*/*.jpg"))[:count]
    assert len(photos) == count, f"test_data/source_a holds {len(photos)} JPEGs, not {count}"
    return photos


def run_worker(
    server: AntennaServer,
    models: Sequence[ServedModel],
    until: Callable[[], bool] | None = None,
    timeout: float = 20.0,
    options: ServeOptions | None = None,
    **settings: Any,
) -> PullWorker:
    """Run a worker until ``until()`` (default: every job done), then stop it gracefully."""
    until = until or server.all_done
    settings = {"service_name": "test worker", "batch_size": 8, "poll_interval": 0.05} | settings

    async def main() -> PullWorker:
        client = AntennaClient(api_root(server.url), TOKEN, {"pid": 1}, backoff=FAST)
        worker = PullWorker(client, models, options or ServeOptions(fetch_timeout=2.0),
                            WorkerSettings(**settings))  # fmt: skip
        running = asyncio.create_task(worker.run())
        deadline = time.monotonic() + timeout
        while not until() and not running.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        worker.request_stop()
        await running
        await client.aclose()
        assert until(), "the worker did not finish in time"
        return worker

    return asyncio.run(main())
