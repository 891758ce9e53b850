"""Benchmark ``moths-prepare`` against the seed's way of finding broken images.

The seed decoded every file in full (``Image.open(p).convert("RGB")``) over a
process pool, with no cache. This script builds a corpus of camera-sized JPEGs
(1600x1200, smooth gradients + shapes + sensor-like noise, ~200-500 KB each)
in two sources with planted broken files, then times in one run:

(a) the seed's approach, (b) ``prepare_sources`` on an empty OUT, (c) a re-run
on that OUT. Rounds alternate which of (a) and (b)+(c) runs first, so neither
side always meets a warmer or a busier machine.

Usage: ``python bench/prepare.py [--dir DIR] [--images 600] [--workers N] [--repeat 5]
[--noise 4]``. The first-run ratio depends on file entropy: prepare's floor is
libjpeg's Huffman decoding, which grows with the bytes per image, while the
baseline also pays the full-size inverse DCT, colour conversion and copy.
With ``--dir`` the corpus is kept there and reused by later runs.
The last line printed is the result; only the first ratio is against the
baseline, the second compares prepare with itself:
``prepare: first run N.NNx faster than baseline, re-run N.NNx faster than its first run,
same rejects: yes|no``
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import photos
from PIL import Image

from moths_framework.data.prepare import PrepareSummary, prepare_sources

SPECIES = [
    "Noctua pronuba",
    "Noctua comes",
    "Aglais io",
    "Pieris rapae",
    "Biston betularia",
    "Cydia pomonella",
    "Pammene aurana",
    "Zygaena exulans",
]
SIZE = (1600, 1200)
MARKER = "corpus.json"  # lists the planted broken files; its presence means "corpus ready"


def camera_like_jpeg(seed: int, noise_sigma: float = 4.0) -> bytes:
    """A 1600x1200 photo-like JPEG (see ``photos.camera_like_jpeg``)."""
    return photos.camera_like_jpeg(seed, SIZE, noise_sigma=noise_sigma)


def _write_image(job: tuple[str, int, float]) -> int:
    path, seed, noise_sigma = job
    data = camera_like_jpeg(seed, noise_sigma)
    Path(path).write_bytes(data)
    return len(data)


def make_corpus(root: Path, images: int, noise_sigma: float, workers: int) -> set[str]:
    """Write ``root/source_{a,b}/<species>/<n>.jpg`` plus 7 planted broken files."""
    marker, made_with = root / MARKER, {"images": images, "noise": noise_sigma}
    if marker.is_file():
        corpus = json.loads(marker.read_text())
        if corpus["made_with"] != made_with:
            raise SystemExit(f"{root} holds a corpus made with {corpus['made_with']}")
        return set(corpus["broken"])
    jobs = []
    for i in range(images):
        folder = root / f"source_{'ab'[i % 2]}" / SPECIES[i % len(SPECIES)]
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((str(folder / f"{i}.jpg"), i, noise_sigma))
    with multiprocessing.Pool(workers) as pool:
        sizes = pool.map(_write_image, jobs, chunksize=4)
    print(f"corpus: {images} JPEGs, mean {sum(sizes) / len(sizes) / 1000:.0f} KB", flush=True)
    broken = _plant_broken([Path(job[0]) for job in jobs])
    marker.write_text(json.dumps({"made_with": made_with, "broken": sorted(broken)}))
    return broken


def _plant_broken(images: list[Path]) -> set[str]:
    broken = []
    for i, image in enumerate(images[:3]):  # truncated: a real JPEG cut at a fraction
        data = image.read_bytes()
        target = image.with_name(f"truncated-{i}.jpg")
        target.write_bytes(data[: len(data) * (i + 2) // 5])
        broken.append(target)
    for i, image in enumerate(images[3:5]):
        (target := image.with_name(f"empty-{i}.jpg")).write_bytes(b"")
        broken.append(target)
    for i, image in enumerate(images[5:7]):
        (target := image.with_name(f"notes-{i}.jpg")).write_text("field notes, not a photo\n")
        broken.append(target)
    return {str(p.resolve()) for p in broken}


def _seed_decode(path: str) -> str | None:
    """The seed's check: a full decode to RGB; a file that raises is broken."""
    try:
        Image.open(path).convert("RGB")
    except Exception:
        return path
    return None


def run_baseline(files: list[str], workers: int) -> tuple[float, set[str]]:
    start = time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        failures = {p for p in pool.map(_seed_decode, files) if p is not None}
    return time.perf_counter() - start, failures


def timed_prepare(out: Path, sources: list[Path], workers: int) -> tuple[float, PrepareSummary]:
    start = time.perf_counter()
    summary = prepare_sources(out, sources, workers=workers, progress=False)
    return time.perf_counter() - start, summary


def broken_rejects(out: Path) -> set[str]:
    """Prepare's rejected files, broken ones only (not duplicates or conflicts)."""
    with open(out / "rejected.csv", newline="", encoding="utf-8") as file:
        rows = csv.DictReader(file)
        return {r["source"] for r in rows if not r["reason"].startswith(("duplicate", "conflict"))}


def baseline_goes_first(round_: int) -> bool:
    """Even rounds time the baseline first, odd rounds prepare first."""
    return round_ % 2 == 0


def result_line(first_x: float, rerun_x: float, same_rejects: bool) -> str:
    """The benchmark's one-line result; the re-run is compared with the first run."""
    return (
        f"prepare: first run {first_x:.2f}x faster than baseline, "
        f"re-run {rerun_x:.2f}x faster than its first run, "
        f"same rejects: {'yes' if same_rejects else 'no'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="corpus folder to create or reuse")
    parser.add_argument("--images", type=int, default=600, help="valid JPEGs to generate")
    cores = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    parser.add_argument("--workers", type=int, default=cores, help="pool size, both sides")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the median ratio counts")
    parser.add_argument(
        "--noise", type=float, default=4.0, help="sensor noise sigma: more noise, bigger files"
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = (opts.dir or Path(tmp) / "corpus").resolve()
        planted = make_corpus(root, opts.images, opts.noise, opts.workers)
        sources = [root / "source_a", root / "source_b"]
        files = sorted(str(p) for s in sources for p in s.rglob("*") if p.is_file())
        # Both sides must read from the page cache, not the disk: read everything once first.
        total = sum(len(Path(p).read_bytes()) for p in files)
        print(f"{len(files)} files, {total / 1e6:.0f} MB, {opts.workers} workers", flush=True)
        # Other work on the machine makes single timings noisy: each round times
        # the contenders back to back, and the median of the rounds' ratios counts.
        first_ratios, rerun_ratios = [], []
        for round_ in range(opts.repeat):
            out = Path(tmp) / f"out-{round_}"
            if baseline_goes_first(round_):
                base_s, base_failures = run_baseline(files, opts.workers)
            first_s, first = timed_prepare(out, sources, opts.workers)
            rerun_s, rerun = timed_prepare(out, sources, opts.workers)
            if not baseline_goes_first(round_):
                base_s, base_failures = run_baseline(files, opts.workers)
            first_ratios.append(base_s / first_s)
            rerun_ratios.append(first_s / rerun_s)
            order = "baseline first" if baseline_goes_first(round_) else "prepare first"
            print(
                f"round {round_ + 1} ({order}): baseline {base_s:.2f} s, first run {first_s:.2f} s "
                f"({first.decoded} decoded), re-run {rerun_s:.3f} s ({rerun.decoded} decoded)",
                flush=True,
            )
        same = broken_rejects(out) == planted == base_failures
        first_x, rerun_x = statistics.median(first_ratios), statistics.median(rerun_ratios)
        spread = f"{min(first_ratios):.2f}-{max(first_ratios):.2f}x"
        print(f"first-run ratio over {opts.repeat} rounds: {spread}")
        print(result_line(first_x, rerun_x, same))


if __name__ == "__main__":
    main()
