"""Benchmark ONNX Runtime inference (``OnnxClassifier``) against a PyTorch eager loop.

Builds a ``MothsClassifier`` with the timm ``efficientnet_b0`` backbone (random
weights, 224x224) and a 50-species plain hierarchy CSV, writes its checkpoint
as ``moths-fit`` does (``state_dict`` + what ``on_save_checkpoint`` adds),
exports it with the real exporter (``export_onnx``, parity check included),
and writes ``--images`` camera-like 640x480 JPEGs (gradients, shapes, noise,
quality 90), all in a temporary directory. Then, in the same run:

(a) end to end, ``OnnxClassifier.from_file(model, providers="cpu").predict(paths)``:
    decode, preprocess, model, softmax, top-k and roll-up;
(b) the plain PyTorch loop: ``PIL.Image.open`` → ``eval_transform`` → stack →
    the ``MothsClassifier`` under ``torch.inference_mode()`` → softmax;

both with ``--threads`` compute threads (ONNX Runtime intra-op threads, and
``torch.set_num_threads``) and ``--batch-size``. One untimed pass of each
warms up; then a and b alternate for ``--rounds`` rounds (who goes first
alternates too) and the median throughputs are compared. The model alone is
timed the same way on an already preprocessed batch (``session.run`` via
``OnnxClassifier.logits`` against the torch forward).

Run: ``.venv/bin/python bench/infer.py [--images 200] [--batch-size 32] [--rounds 3]
[--threads N]``. The last two lines printed are the result:
``infer: ort N img/s, torch N img/s, N.NNx`` and
``infer (model only): ort N img/s, torch N img/s, N.NNx``.
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

import numpy as np
import photos
import torch
from moths_plugin_timm import TimmBackbone
from PIL import Image
from torch import nn

from moths_framework.data.transforms import eval_transform
from moths_framework.export.onnx import export_onnx
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.images import open_rgb
from moths_framework.inference import OnnxClassifier
from moths_framework.model.lightning import MothsClassifier

SPECIES = 50
IMAGE_SIZE = (640, 480)
BACKBONE = "efficientnet_b0"


def camera_like_jpeg(seed: int, size: tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A photo-like JPEG at the benchmark's size (see ``photos.camera_like_jpeg``)."""
    return photos.camera_like_jpeg(seed, size, shapes=12, radius=(10, 120), blur=1.5)


def write_images(folder: Path, count: int) -> list[str]:
    folder.mkdir()
    paths = [folder / f"{i:04d}.jpg" for i in range(count)]
    for seed, path in enumerate(paths):
        path.write_bytes(camera_like_jpeg(seed))
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


def torch_predict(model: MothsClassifier, paths: list[str], batch_size: int) -> list[int]:
    """The plain eager loop; species top-1 per image."""
    transform = eval_transform(model.preprocessing)
    top1: list[int] = []
    for start in range(0, len(paths), batch_size):
        batch = [transform(Image.open(p).convert("RGB")) for p in paths[start : start + batch_size]]
        with torch.inference_mode():
            probs = [logits.softmax(1) for logits in model(torch.stack(batch))]
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


def alternate(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each run, alternating which goes first; one untimed call first."""
    for run in runs.values():
        run()
    timed: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            timed[name].append(seconds(runs[name]))
    return timed


def report(label: str, timed: dict[str, list[float]], images: int) -> str:
    rates = {name: [images / s for s in values] for name, values in timed.items()}
    for name, values in rates.items():
        print(f"  {label} {name} img/s per round: {', '.join(f'{v:.1f}' for v in values)}")
    ort, eager = statistics.median(rates["ort"]), statistics.median(rates["torch"])
    return f"{label}: ort {ort:.1f} img/s, torch {eager:.1f} img/s, {ort / eager:.2f}x"


def end_to_end(
    args: argparse.Namespace, model: MothsClassifier, classifier: OnnxClassifier, paths: list[str]
) -> str:
    ort_top1 = onnx_predict(classifier, paths, args.batch_size)
    torch_top1 = torch_predict(model, paths, args.batch_size)
    classes = model.hierarchy.classes("species")
    agree = np.mean([o == classes[t] for o, t in zip(ort_top1, torch_top1, strict=True)])
    print(f"species top-1 agreement ort vs torch: {agree:.1%} of {len(paths)} images")
    runs = {
        "ort": lambda: onnx_predict(classifier, paths, args.batch_size),
        "torch": lambda: torch_predict(model, paths, args.batch_size),
    }
    return report("infer", alternate(runs, args.rounds), len(paths))


def model_only(
    args: argparse.Namespace, model: MothsClassifier, classifier: OnnxClassifier, paths: list[str]
) -> str:
    transform = eval_transform(model.preprocessing)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[: args.batch_size]])
    array = batch.numpy()
    reps = max(1, len(paths) // args.batch_size)  # about as many images as end to end

    def ort_model() -> None:
        for _ in range(reps):
            classifier.logits(array)

    def torch_model() -> None:
        with torch.inference_mode():
            for _ in range(reps):
                model(batch)

    runs = {"ort": ort_model, "torch": torch_model}
    return report("infer (model only)", alternate(runs, args.rounds), reps * len(batch))


def stage_costs(args: argparse.Namespace, classifier: OnnxClassifier, paths: list[str]) -> str:
    """Milliseconds per image of each end-to-end stage, run one after another."""
    sample = paths[: args.batch_size]
    start = time.perf_counter()
    images = [open_rgb(p) for p in sample]
    decode = time.perf_counter() - start
    arrays = [classifier.preprocess(image) for image in images]
    preprocess = time.perf_counter() - start - decode
    batch = np.stack(arrays)
    classifier.logits(batch)  # warm-up
    model = min(seconds(lambda: classifier.logits(batch)) for _ in range(3))
    n = len(sample) / 1e3
    return (
        f"ort stages per image: decode {decode / n:.2f} ms + preprocess {preprocess / n:.2f} ms "
        f"(one thread), model {model / n:.2f} ms ({args.threads} threads)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="640x480 JPEGs to classify")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of ort and torch")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="compute threads of both"
    )
    args = parser.parse_args(argv)
    if min(args.images, args.batch_size, args.rounds, args.threads) < 1:
        parser.error("--images, --batch-size, --rounds and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="moths-bench-infer-") as name:
        tmp = Path(name)
        paths = write_images(tmp / "images", args.images)
        model = build_model(tmp, paths)
        classifier = OnnxClassifier.from_file(
            export(model, tmp, paths), providers="cpu", num_threads=args.threads
        )
        print(
            f"{BACKBONE} {model.preprocessing.input_size}, {args.images} images "
            f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, batch {args.batch_size}, {args.threads} threads "
            f"(torch {torch.get_num_threads()})"
        )
        print(stage_costs(args, classifier, paths))
        lines = [
            end_to_end(args, model, classifier, paths),
            model_only(args, model, classifier, paths),
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
