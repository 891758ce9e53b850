"""Benchmark ONNX Runtime inference (``OnnxClassifier``) against a PyTorch user's best.

Builds a ``MothsClassifier`` with the timm ``efficientnet_b0`` backbone (random
weights, 224x224) and a 50-species plain hierarchy CSV, writes its checkpoint
as ``moths-fit`` does (``state_dict`` + what ``on_save_checkpoint`` adds),
exports it with the real exporter (``export_onnx``, parity check included),
and writes ``--images`` camera-like JPEGs of ``--size`` (default 1600x1200, as
cameras take them; gradients, shapes, noise, quality 90), all in a temporary
directory. Then, in the same run, end to end from image files to species top-1:

(a) ``OnnxClassifier.from_file(model, providers="cpu").predict(paths)``:
    decode (by default each JPEG at the smallest reduced scale that covers the
    resize, as validation during training decodes), preprocess, model, softmax,
    top-k and roll-up, at batch 8, 16, 32, 64;
(b) what a PyTorch user writes: a ``Dataset`` that opens each file
    (``Image.open(...).convert("RGB")`` + ``eval_transform``), a ``DataLoader``
    with 1 or 2 worker processes (persistent, so they start once), the
    ``MothsClassifier`` under ``torch.inference_mode()``, softmax per rank; at
    batch 8, 16, 32, 64, in ``channels_last`` memory format if that runs the model
    faster here (timed first, on one batch), ``torch.set_num_threads(--threads)``.

Both sides get ``--threads`` compute threads (ONNX Runtime intra-op threads;
torch intra-op threads in the main process, the loader's workers run one
each). Every setting of each side is timed over ``--sweep-rounds`` passes,
interleaved, and each side's best setting (highest rate seen) is kept. The two
best settings then alternate for ``--rounds`` rounds (who goes first
alternates too); the result compares their median rates. Each round also times
ONNX Runtime on the model alone (the same images, decoded beforehand, at the
chosen batch size): end to end should reach 85% of that rate.

Run: ``.venv/bin/python bench/infer.py [--images 120] [--size 1600x1200] [--rounds 5]
[--sweep-rounds 2] [--threads N]``. The last line printed is the result:
``infer: ort X img/s (batch B), torch best Y img/s (batch B2, workers W), N.NNx``
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import photos
import torch
from moths_plugin_timm import TimmBackbone
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from moths_framework.data.transforms import eval_transform
from moths_framework.export.onnx import export_onnx
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.images import open_rgb
from moths_framework.inference import OnnxClassifier
from moths_framework.model.lightning import MothsClassifier

SPECIES = 50
IMAGE_SIZE = (640, 480)
BACKBONE = "efficientnet_b0"
BATCH_SIZES = (8, 16, 32, 64)
TORCH_WORKERS = (1, 2)


def camera_like_jpeg(seed: int, size: tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A photo-like JPEG (see ``photos.camera_like_jpeg``); shapes scale with the size."""
    scale = size[0] / IMAGE_SIZE[0]
    radius = (int(10 * scale), int(120 * scale))
    return photos.camera_like_jpeg(seed, size, shapes=12, radius=radius, blur=1.5 * scale)


def write_images(folder: Path, count: int, size: tuple[int, int] = IMAGE_SIZE) -> list[str]:
    folder.mkdir()
    paths = [folder / f"{i:04d}.jpg" for i in range(count)]
    for seed, path in enumerate(paths):
        path.write_bytes(camera_like_jpeg(seed, size))
    return [str(p) for p in paths]


def build_model(tmp: Path, images: list[str]) -> MothsClassifier:
    """The classifier on a plain hierarchy CSV of ``SPECIES`` species, random weights.

    The batch-norm statistics are set from ``images``: with the initial ones the
    activations of a random EfficientNet fade to ~1e-5 and every image gets the
    same logits, which would make the agreement check below meaningless.
    """
    rows = ["species,group,family,genus"]
    rows += [
        f"Genus{s // 3} sp{s},group{s % 3},family{s // 10},Genus{s // 3}" for s in range(SPECIES)
    ]
    csv = tmp / "hierarchy.csv"
    csv.write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    backbone = TimmBackbone(name=BACKBONE, pretrained=False)
    model = MothsClassifier(backbone, hierarchy=CsvHierarchy(csv).build())
    transform = eval_transform(model.preprocessing)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images[:16]])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        model.train()(batch)
    return model.eval()


def export(model: MothsClassifier, tmp: Path, images: list[str]) -> Path:
    """Write the checkpoint as Lightning + ``on_save_checkpoint`` would, export it to ONNX."""
    checkpoint = {"state_dict": model.state_dict(), "epoch": 0}
    model.on_save_checkpoint(checkpoint)  # no trainer: no metrics, no data summary
    torch.save(checkpoint, tmp / "model.ckpt")
    result = export_onnx(tmp / "model.ckpt", tmp / "model.onnx", force=True, images=images[:8])
    print(f"exported {result.path.name} ({result.size_bytes / 1e6:.1f} MB): {result.parity}")
    return result.path


class ImageFiles(Dataset):
    """The PyTorch user's dataset: open the file, convert to RGB, eval transform."""

    def __init__(self, paths: Sequence[str], transform: Callable) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))


@dataclass
class TorchSetting:
    """One way to run the PyTorch baseline; its loader keeps its workers between passes."""

    batch_size: int
    workers: int
    channels_last: bool
    loader: DataLoader

    @property
    def label(self) -> str:
        return f"batch {self.batch_size}, workers {self.workers}"


def torch_setting(
    model: MothsClassifier, paths: list[str], batch_size: int, workers: int, channels_last: bool
) -> TorchSetting:
    dataset = ImageFiles(paths, eval_transform(model.preprocessing))
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, persistent_workers=True
    )
    return TorchSetting(batch_size, workers, channels_last, loader)


def torch_predict(model: MothsClassifier, setting: TorchSetting) -> list[int]:
    """The PyTorch user's loop over the loader; species top-1 per image."""
    top1: list[int] = []
    with torch.inference_mode():
        for batch in setting.loader:
            if setting.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            probs = [logits.softmax(1) for logits in model(batch)]
            top1 += probs[0].argmax(1).tolist()
    return top1


def onnx_predict(classifier: OnnxClassifier, paths: list[str], batch_size: int) -> list[str]:
    """End to end through the production API; species top-1 per image."""
    predictions = classifier.predict(paths, batch_size=batch_size)
    failed = [p.source for p in predictions if not p.ok]
    if failed:
        raise RuntimeError(f"OnnxClassifier could not classify {failed[:3]}")
    return [p.top1("species")[0] for p in predictions]


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def use_channels_last(model: MothsClassifier, batch: torch.Tensor, rounds: int) -> bool:
    """Time the model on one batch in both memory formats (alternating); keep the faster.

    Leaves the model in the chosen format. Prints both rates.
    """
    rates: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for r in range(rounds + 1):
            for last in (False, True) if r % 2 == 0 else (True, False):
                fmt = torch.channels_last if last else torch.contiguous_format
                model.to(memory_format=fmt)
                x = batch.contiguous(memory_format=fmt)
                elapsed = seconds(lambda x=x: model(x))
                if r > 0:  # the first round warms up
                    rates[last].append(len(batch) / elapsed)
    plain, last = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"torch model only, batch {len(batch)}: {plain:.1f} img/s, channels_last {last:.1f}")
    model.to(memory_format=torch.channels_last if last > plain else torch.contiguous_format)
    return last > plain


def sweep(runs: dict[str, Callable[[], object]], rounds: int, images: int) -> dict[str, float]:
    """Best img/s of each run over ``rounds`` interleaved passes (order reversed each round)."""
    best = dict.fromkeys(runs, 0.0)
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            best[name] = max(best[name], images / seconds(runs[name]))
    for name, rate in best.items():
        print(f"  sweep {name}: {rate:.1f} img/s")
    return best


def alternate(
    runs: dict[str, Callable[[], object]], rounds: int, images: int
) -> dict[str, list[float]]:
    """Img/s of each run per round, the order reversed every other round."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(images / seconds(runs[name]))
    return rates


def model_only(classifier: OnnxClassifier, paths: list[str], batch_size: int) -> Callable:
    """ONNX Runtime on the model alone: ``paths`` decoded and preprocessed beforehand."""
    arrays = [classifier.model_input(p) for p in paths]
    batches = [np.stack(arrays[i : i + batch_size]) for i in range(0, len(arrays), batch_size)]
    return lambda: [classifier.logits(batch) for batch in batches]


def result_line(
    ort_rate: float, ort_batch: int, torch_rate: float, torch_batch: int, workers: int
) -> str:
    """The benchmark's one-line result: each side at its best setting."""
    return (
        f"infer: ort {ort_rate:.1f} img/s (batch {ort_batch}), torch best {torch_rate:.1f} "
        f"img/s (batch {torch_batch}, workers {workers}), {ort_rate / torch_rate:.2f}x"
    )


def end_to_end(
    args: argparse.Namespace, model: MothsClassifier, classifier: OnnxClassifier, paths: list[str]
) -> str:
    transform = eval_transform(model.preprocessing)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[:32]])
    channels_last = use_channels_last(model, batch, args.rounds)
    settings = {
        s.label: s
        for s in (
            torch_setting(model, paths, b, w, channels_last)
            for b, w in itertools.product(BATCH_SIZES, TORCH_WORKERS)
        )
    }
    first = next(iter(settings.values()))
    agreement(model, classifier, paths, first)

    runs: dict[str, Callable[[], object]] = {}
    for b in BATCH_SIZES:
        runs[f"ort batch {b}"] = lambda b=b: onnx_predict(classifier, paths, b)
    for label, setting in settings.items():
        runs[f"torch {label}"] = lambda s=setting: torch_predict(model, s)
    # Interleave the two sides so both meet the same load on a shared machine.
    order = [name for pair in itertools.zip_longest(*_by_side(runs)) for name in pair if name]
    best = sweep({name: runs[name] for name in order}, args.sweep_rounds, len(paths))
    ort_b = max(BATCH_SIZES, key=lambda b: best[f"ort batch {b}"])
    torch_label = max(settings, key=lambda label: best[f"torch {label}"])
    chosen = settings[torch_label]
    for label, setting in settings.items():
        if label != torch_label:
            del setting.loader  # stop the other settings' workers

    rates = alternate(
        {
            "ort": runs[f"ort batch {ort_b}"],
            "torch": runs[f"torch {torch_label}"],
            "model": model_only(classifier, paths, ort_b),
        },
        args.rounds,
        len(paths),
    )
    ort_rates, torch_rates = rates["ort"], rates["torch"]
    ratios = [o / t for o, t in zip(ort_rates, torch_rates, strict=True)]
    shares = [o / m for o, m in zip(ort_rates, rates["model"], strict=True)]
    print(f"  ort batch {ort_b} img/s per round: {', '.join(f'{v:.1f}' for v in ort_rates)}")
    print(f"  torch {torch_label} img/s per round: {', '.join(f'{v:.1f}' for v in torch_rates)}")
    print(f"  ort model only img/s per round: {', '.join(f'{v:.1f}' for v in rates['model'])}")
    print(f"  ratio per round: {', '.join(f'{v:.2f}' for v in ratios)}")
    print(f"  ort end to end / model only per round: {', '.join(f'{v:.0%}' for v in shares)}")
    print(
        f"infer: ort end to end {statistics.median(shares):.0%} of its model-only rate "
        f"({statistics.median(rates['model']):.1f} img/s, batch {ort_b})"
    )
    if max(ratios) > 1.25 * min(ratios):
        # Torch's OpenMP threads slow down far more than ONNX Runtime's when other
        # work takes the cores, so a busy machine inflates the ratio: say so.
        print("  note: the ratio varied by more than 25% across rounds; the machine was busy")
    return result_line(
        statistics.median(ort_rates),
        ort_b,
        statistics.median(torch_rates),
        chosen.batch_size,
        chosen.workers,
    )


def _by_side(runs: dict[str, Callable[[], object]]) -> tuple[list[str], list[str]]:
    ort = [name for name in runs if name.startswith("ort")]
    return ort, [name for name in runs if not name.startswith("ort")]


def agreement(
    model: MothsClassifier, classifier: OnnxClassifier, paths: list[str], setting: TorchSetting
) -> None:
    # The same pixels on both sides (a full decode): this checks the runtimes agree.
    classifier.fast_decode = False
    ort_top1 = onnx_predict(classifier, paths, setting.batch_size)
    classifier.fast_decode = True
    torch_top1 = torch_predict(model, setting)
    classes = model.hierarchy.classes("species")
    agree = np.mean([o == classes[t] for o, t in zip(ort_top1, torch_top1, strict=True)])
    print(f"species top-1 agreement ort vs torch: {agree:.1%} of {len(paths)} images")


def stage_costs(args: argparse.Namespace, classifier: OnnxClassifier, paths: list[str]) -> str:
    """Milliseconds per image of each ONNX end-to-end stage, run one after another."""
    sample = paths[:32]
    start = time.perf_counter()
    images = [open_rgb(p) for p in sample]
    decode = time.perf_counter() - start
    arrays = [classifier.preprocess(image) for image in images]
    preprocess = time.perf_counter() - start - decode
    fast = seconds(lambda: [classifier.model_input(p) for p in sample])
    batch = np.stack(arrays)
    classifier.logits(batch)  # warm-up
    model = min(seconds(lambda: classifier.logits(batch)) for _ in range(3))
    n = len(sample) / 1e3
    return (
        f"ort stages per image: full decode {decode / n:.2f} ms + preprocess "
        f"{preprocess / n:.2f} ms, or fast decode and preprocess {fast / n:.2f} ms (one "
        f"thread), model {model / n:.2f} ms ({args.threads} threads, batch {len(sample)})"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120, help="JPEGs to classify")
    parser.add_argument("--size", default="1600x1200", help="their WIDTHxHEIGHT")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the best two")
    parser.add_argument(
        "--sweep-rounds", type=int, default=2, help="passes per setting when choosing the best"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="compute threads of both"
    )
    args = parser.parse_args(argv)
    if min(args.images, args.rounds, args.sweep_rounds, args.threads) < 1:
        parser.error("--images, --rounds, --sweep-rounds and --threads must be >= 1")
    width, _, height = args.size.partition("x")
    args.size = (int(width), int(height))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="moths-bench-infer-") as name:
        tmp = Path(name)
        paths = write_images(tmp / "images", args.images, args.size)
        model = build_model(tmp, paths)
        classifier = OnnxClassifier.from_file(
            export(model, tmp, paths), providers="cpu", num_threads=args.threads
        )
        print(
            f"{BACKBONE} {model.preprocessing.input_size}, {args.images} images "
            f"{args.size[0]}x{args.size[1]}, {args.threads} threads "
            f"(torch {torch.get_num_threads()}), {os.cpu_count()} cores"
        )
        print(stage_costs(args, classifier, paths))
        line = end_to_end(args, model, classifier, paths)
    print(line)


if __name__ == "__main__":
    main()
