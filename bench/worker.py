"""Memory of ``moths-worker`` over a long run: its RSS at task 1,000 and at task 10,000.

A worker runs for weeks; anything it keeps per task (results, images, ids)
shows as growth between the two. The worker runs as its own process
(``moths-worker --model zoo:nl-moths-demo``, CPU, one ONNX Runtime thread)
against the Antenna stand-in of ``tests/helpers/antenna_server.py`` (one job
of ``--tasks`` tasks, every posted body parsed by Antenna's models) and images
served from a local ``http.server`` (``--images`` test_data moths, cycled under
distinct image ids, so every task is fetched, decoded and classified).

Run: ``.venv/bin/python bench/worker.py [--tasks 10000] [--batch-size 24]``. The last
line is ``worker: RSS A MB at task 1,000, B MB at task 10,000 (+C MB), peak D MB,
E tasks/s``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the Antenna stand-in and the image host

from helpers.antenna_server import TOKEN, AntennaServer  # noqa: E402
from helpers.image_host import ImageHost  # noqa: E402


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def main(argv: list[str] | None = None) -> dict[int, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--images", type=int, default=16, help="distinct image files, cycled")
    parser.add_argument("--timeout", type=float, default=900.0)
    opts = parser.parse_args(argv)
    checkpoints = sorted({min(1_000, opts.tasks), opts.tasks})

    host, antenna = ImageHost(), AntennaServer(keep_bodies=False)
    photos = sorted((REPO / "test_data" / "source_a").glob("*/*.jpg"))[: opts.images]
    if not photos:
        raise SystemExit("no JPEGs in test_data/source_a")
    urls = [host.add(f"/moth/{i}.jpg", p.read_bytes()) for i, p in enumerate(photos)]
    antenna.add_job(1, "nl-moths-demo", [(str(i), urls[i % len(urls)]) for i in range(opts.tasks)])
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token.txt"
        token.write_text(TOKEN)
        log = (Path(tmp) / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "moths_framework.cli.worker", "--antenna", antenna.url,
             "--token-file", str(token), "--model", "zoo:nl-moths-demo", "--threads", "1",
             "--batch-size", str(opts.batch_size), "--poll-interval", "0.2"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        rss: dict[int, float] = {}
        started = time.monotonic()
        try:
            for checkpoint in checkpoints:
                while antenna.answered < checkpoint:
                    if worker.poll() is not None or time.monotonic() - started > opts.timeout:
                        raise SystemExit(f"worker stopped or too slow at {antenna.answered} tasks")
                    time.sleep(0.01)
                rss[checkpoint] = rss_mb(worker.pid)  # at the first batch to reach it
                print(
                    f"worker: task {antenna.answered:,}: RSS {rss[checkpoint]:.1f} MB", flush=True
                )
            elapsed = time.monotonic() - started
            peak = rss_mb(worker.pid, "VmHWM")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
            log.close()
            antenna.close()
            host.close()
    first, last = rss[checkpoints[0]], rss[checkpoints[-1]]
    print(
        f"worker: RSS {first:.1f} MB at task {checkpoints[0]:,}, {last:.1f} MB at task "
        f"{checkpoints[-1]:,} ({last - first:+.1f} MB), peak {peak:.1f} MB, "
        f"{opts.tasks / elapsed:.0f} tasks/s"
    )
    return rss


if __name__ == "__main__":
    main()
