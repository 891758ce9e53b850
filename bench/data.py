"""Benchmark the training DataLoader against torchvision's ``ImageFolder`` with the same transforms.

Writes ``--images`` camera-like JPEGs (``photos.camera_like_jpeg``, ``--size``, default
1600x1200, quality 90) into species folders in a temporary directory, then times whole
passes over the training images of both, in the same run:

(a) ``MothsDataModule(ImageFolder(root), ...).train_dataloader()``: the framework's own
    training loader (``SampleDataset``, whose ``FileTransform`` draws the random resized
    crop on the header's size and decodes each JPEG at the smallest scale that still
    covers it; ``fast_decode`` on, the default);
(b) ``torchvision.datasets.ImageFolder`` over the same training files with the same
    transform (``train_transform``: ``RandomResizedCrop`` + flip + normalise, from the same
    ``Preprocessing``), in a ``DataLoader`` with the same batch size, shuffling, worker
    count and ``drop_last``;

both with persistent workers (started in a warm-up pass), so a pass times the steady state.

and, once per round, (c) the framework's loader with ``fast_decode=False``, to show what
the reduced decode itself brings. The sides alternate (who goes first alternates too) for
``--rounds`` rounds; the result compares the medians and prints each round's ratio.

Run: ``.venv/bin/python bench/data.py [--images 160] [--size 1600x1200] [--workers 2]
[--batch-size 32] [--rounds 5]``. The last line printed is the result:
``data: X img/s vs torchvision Y img/s, N.NNx``
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import photos
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder as TorchvisionImageFolder

from moths_framework.data.datamodule import MothsDataModule
from moths_framework.data.sources import ImageFolder
from moths_framework.data.transforms import train_transform
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.preprocessing import Preprocessing

SPECIES = 4
PREPROCESSING = Preprocessing((224, 224), 0.875)  # a production-sized input


def write_images(root: Path, count: int, size: tuple[int, int]) -> Path:
    """``count`` JPEGs spread over ``SPECIES`` species folders; returns the hierarchy CSV."""
    for i in range(count):
        folder = root / "images" / f"Genus{i % SPECIES} sp{i % SPECIES}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:04d}.jpg").write_bytes(photos.camera_like_jpeg(i, size))
    csv = root / "hierarchy.csv"
    rows = ["species,group,family,genus"]
    rows += [f"Genus{s} sp{s},group{s % 2},family{s},Genus{s}" for s in range(SPECIES)]
    csv.write_text("\n".join(rows) + "\n")
    return csv


def framework_loader(root: Path, csv: Path, args: argparse.Namespace, fast: bool) -> DataLoader:
    data = MothsDataModule(
        ImageFolder(root / "images"),
        CsvHierarchy(csv),
        test_fraction=0.05,
        batch_size=args.batch_size,
        num_workers=args.workers,
        persistent_workers=True,
        fast_decode=fast,
    )
    return data.train_dataloader()  # no trainer: the default Preprocessing (224 px)


def torchvision_loader(root: Path, ours: DataLoader, args: argparse.Namespace) -> DataLoader:
    """ImageFolder over the files ``ours`` trains on, the same transform and loader settings."""
    train = {str(sample.path) for sample in ours.dataset.samples}
    dataset = TorchvisionImageFolder(
        str(root / "images"),
        transform=train_transform(PREPROCESSING),
        is_valid_file=train.__contains__,
    )
    assert len(dataset) == len(train)
    return DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=ours.drop_last,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )


def images_per_second(loader: DataLoader) -> float:
    """One pass over ``loader``: images delivered per second."""
    start = time.perf_counter()
    images = sum(len(batch[0]) for batch in loader)
    return images / (time.perf_counter() - start)


def alternate(loaders: dict[str, DataLoader], rounds: int) -> dict[str, list[float]]:
    """Img/s of each loader per round, the order reversed every other round."""
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    names = list(loaders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(images_per_second(loaders[name]))
    return rates


def result_line(ours: float, torchvision: float) -> str:
    """The benchmark's one-line result."""
    return (
        f"data: {ours:.1f} img/s vs torchvision {torchvision:.1f} img/s, {ours / torchvision:.2f}x"
    )


def report(rates: dict[str, list[float]], say: Callable[[str], None] = print) -> str:
    for name, values in rates.items():
        say(f"  {name} img/s per round: {', '.join(f'{v:.1f}' for v in values)}")
    ratios = [o / t for o, t in zip(rates["ours"], rates["torchvision"], strict=True)]
    say(f"  ours / torchvision per round: {', '.join(f'{v:.2f}' for v in ratios)}")
    exact = [o / e for o, e in zip(rates["ours"], rates["ours, fast_decode off"], strict=True)]
    say(f"  ours / ours with fast_decode off per round: {', '.join(f'{v:.2f}' for v in exact)}")
    if max(ratios) > 1.25 * min(ratios):
        say("  note: the ratio varied by more than 25% across rounds; the machine was busy")
    return result_line(statistics.median(rates["ours"]), statistics.median(rates["torchvision"]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160, help="JPEGs to write")
    parser.add_argument("--size", default="1600x1200", help="their WIDTHxHEIGHT")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (both)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="passes of each loader")
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    args.size = (int(width), int(height))
    if min(args.images, args.rounds, args.batch_size) < 1 or args.workers < 0:
        parser.error("--images, --rounds and --batch-size must be >= 1, --workers >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="moths-bench-data-") as name:
        root = Path(name)
        csv = write_images(root, args.images, args.size)
        ours = framework_loader(root, csv, args, fast=True)
        loaders = {
            "ours": ours,
            "torchvision": torchvision_loader(root, ours, args),
            "ours, fast_decode off": framework_loader(root, csv, args, fast=False),
        }
        print(
            f"{len(ours.dataset)} training images {args.size[0]}x{args.size[1]} -> "
            f"{PREPROCESSING.input_size[0]} px, batch {args.batch_size}, "
            f"{args.workers} workers, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        for loader in loaders.values():  # warm-up: page cache, workers started
            images_per_second(loader)
        line = report(alternate(loaders, args.rounds))
    print(line)


if __name__ == "__main__":
    main()
