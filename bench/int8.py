"""Benchmark int8 (``moths-export --int8``) against float32 on ONNX Runtime CPU.

For each ``--backbones`` name (timm, random weights with batch-norm statistics
set from the images, 224x224, a 50-species hierarchy; see ``infer.build_model``)
it writes the checkpoint, exports float32 with the real exporter, quantises it
with the exporter's int8 step (``quantize_int8``: ``quant_pre_process``, the
spatial-mean rewrite, ``quantize_static`` QDQ per-channel u8s8) calibrated on
``--calibration`` images the timed ones do not include. The export's own ≥ 99 %
agreement gate is not applied here: random weights are not a trained model
(see the README's Speed section), and the bench reports what it measures.

Then, on the same images in the same run, float32 and int8 alternate (who goes
first alternates too) for ``--rounds`` rounds:

- model only: ONNX Runtime sessions with ``OnnxClassifier``'s options
  (``ORT_ENABLE_ALL``, no spinning threads) on preprocessed batches of 32;
- end to end: ``OnnxClassifier.predict`` from JPEG files (decode, preprocess,
  model, softmax, top-k, roll-up), batch 32.

Each round records wall-clock img/s and img/s per CPU-second of this process
(the second is what other processes on a shared machine disturb least). The
result compares medians; the per-round spread is printed above it.
``--levels`` first compares ONNX Runtime's graph optimisation levels.

Last, on a trained network (``int8_imagenet.py``): EfficientNet-Lite0 with its
ImageNet weights, top-1 agreement of int8 with float32 over 216 natural photos
and crops of them (``--no-speed``: this part only).

Run: ``.venv/bin/python bench/int8.py [--backbones efficientnet_b0 resnet50]
[--images 96] [--calibration 64] [--rounds 7] [--threads N] [--levels] [--no-speed]``.
Result lines, one model-only and one end-to-end per backbone, then the agreement:
``int8: X img/s vs fp32 Y img/s, N.NNx, top-1 agreement P% (model only, NAME, T threads)``
``int8 agreement: X% top-1 on N natural images (efficientnet_lite0, ImageNet weights)``
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import infer
import int8_imagenet
import numpy as np
import onnxruntime as ort
import torch
from moths_plugin_timm import TimmBackbone
from PIL import Image
from torch import nn

from moths_framework.data.transforms import eval_transform
from moths_framework.export.int8 import calibration_inputs, quantize_int8
from moths_framework.export.onnx import export_onnx
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.images import open_rgb
from moths_framework.inference import OnnxClassifier
from moths_framework.inference.metadata import INPUT_NAME
from moths_framework.model.lightning import MothsClassifier

BATCH = 32
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass
class Rates:
    """Img/s per round: wall clock, and per CPU-second of this process."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, images: int, run: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        self.wall.append(images / (time.perf_counter() - wall))
        self.cpu.append(images / (time.process_time() - cpu))


def build_model(tmp: Path, images: list[str], backbone: str) -> MothsClassifier:
    """``infer.build_model`` for any timm backbone: 50 species, BN statistics from ``images``."""
    rows = ["species,group,family,genus"]
    rows += [f"Genus{s // 3} sp{s},group{s % 3},family{s // 10},Genus{s // 3}" for s in range(50)]
    (tmp / "hierarchy.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    model = MothsClassifier(
        TimmBackbone(name=backbone, pretrained=False),
        hierarchy=CsvHierarchy(tmp / "hierarchy.csv").build(),
    )
    transform = eval_transform(model.preprocessing)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images[:16]])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batch
    with torch.no_grad():
        model.train()(batch)
    return model.eval()


def export_both(
    backbone: str, tmp: Path, timed: list[str], calibration: list[str]
) -> tuple[Path, Path]:
    """float32 through ``export_onnx`` (parity with PyTorch checked), then its int8 version."""
    model = build_model(tmp, calibration, backbone)
    checkpoint = {"state_dict": model.state_dict(), "epoch": 0}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp / "model.ckpt")
    fp32 = export_onnx(tmp / "model.ckpt", tmp / "fp32.onnx", force=True, images=timed[:8])
    start = time.perf_counter()
    inputs = calibration_inputs(calibration, model.preprocessing, len(calibration))
    quantize_int8(fp32.path, tmp / "int8.onnx", inputs)
    size = (tmp / "int8.onnx").stat().st_size
    print(
        f"{backbone}: fp32 {fp32.size_bytes / 1e6:.1f} MB ({fp32.parity}); int8 {size / 1e6:.1f} "
        f"MB, calibrated on {len(inputs)} images in {time.perf_counter() - start:.0f} s"
    )
    return fp32.path, tmp / "int8.onnx"


def session(path: Path, threads: int, level: str = "all") -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # As OnnxClassifier's sessions: spinning threads burn cores others need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batches(sess: ort.InferenceSession, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Every output over ``batch`` in chunks of ``BATCH``."""
    names = [o.name for o in sess.get_outputs()]
    chunks = [
        sess.run(names, {INPUT_NAME: batch[i : i + BATCH]}) for i in range(0, len(batch), BATCH)
    ]
    return {name: np.concatenate([c[k] for c in chunks]) for k, name in enumerate(names)}


def alternate(runs: dict[str, Callable[[], object]], images: int, rounds: int) -> dict[str, Rates]:
    """Run each contender once per round, the order reversed every other round; one warm-up."""
    rates = {name: Rates() for name in runs}
    names = list(runs)
    for run in runs.values():
        run()
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].add(images, runs[name])
    return rates


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


def result_line(int8: Rates, fp32: Rates, agreement: float, what: str) -> str:
    """The required line, on wall-clock medians, plus the CPU-time ratio beside it."""
    q, f = statistics.median(int8.wall), statistics.median(fp32.wall)
    cpu = statistics.median(int8.cpu) / statistics.median(fp32.cpu)
    return (
        f"int8: {q:.1f} img/s vs fp32 {f:.1f} img/s, {q / f:.2f}x, top-1 agreement "
        f"{agreement:.1%} ({what}; per CPU-second {cpu:.2f}x)"
    )


def compare_levels(fp32: Path, int8: Path, batch: np.ndarray, args: argparse.Namespace) -> None:
    sessions = {
        f"{name} {level}": session(path, args.threads, level)
        for name, path in (("fp32", fp32), ("int8", int8))
        for level in LEVELS
    }
    runs = {name: (lambda s=s: run_batches(s, batch)) for name, s in sessions.items()}
    for name, rates in alternate(runs, len(batch), max(2, args.rounds // 2)).items():
        print(f"  level {name}: per CPU-second {spread(rates.cpu)}")


def model_only(
    fp32: Path, int8: Path, batch: np.ndarray, args: argparse.Namespace, what: str
) -> str:
    sessions = {"fp32": session(fp32, args.threads), "int8": session(int8, args.threads)}
    outputs = {name: run_batches(s, batch) for name, s in sessions.items()}
    ranks = [n for n in outputs["fp32"] if n != "features"]
    agree = {
        r: float((outputs["fp32"][r].argmax(1) == outputs["int8"][r].argmax(1)).mean())
        for r in ranks
    }
    per_rank = ", ".join(f"{rank} {share:.1%}" for rank, share in agree.items())
    print(f"  model only top-1 agreement per rank: {per_rank}")
    runs = {name: (lambda s=s: run_batches(s, batch)) for name, s in sessions.items()}
    rates = alternate(runs, len(batch), args.rounds)
    for name, r in rates.items():
        print(f"  model only {name}: wall {spread(r.wall)}; per CPU-second {spread(r.cpu)}")
    return result_line(rates["int8"], rates["fp32"], agree["species"], f"model only, {what}")


def end_to_end(
    fp32: Path, int8: Path, paths: list[str], args: argparse.Namespace, what: str
) -> str:
    classifiers = {
        name: OnnxClassifier.from_file(p, providers="cpu", num_threads=args.threads)
        for name, p in (("fp32", fp32), ("int8", int8))
    }

    def top1(name: str) -> list[str]:
        return [p.top1("species")[0] for p in classifiers[name].predict(paths, batch_size=BATCH)]

    agreement = float(np.mean([a == b for a, b in zip(top1("fp32"), top1("int8"), strict=True)]))
    rates = alternate(
        {name: (lambda n=name: top1(n)) for name in classifiers}, len(paths), args.rounds
    )
    for name, r in rates.items():
        print(f"  end to end {name}: wall {spread(r.wall)}; per CPU-second {spread(r.cpu)}")
    return result_line(rates["int8"], rates["fp32"], agreement, f"end to end, {what}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_b0"], help="timm names")
    parser.add_argument("--images", type=int, default=96, help="640x480 JPEGs timed")
    parser.add_argument("--calibration", type=int, default=64, help="other JPEGs that calibrate")
    parser.add_argument("--rounds", type=int, default=7, help="alternations of fp32 and int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT threads")
    parser.add_argument("--levels", action="store_true", help="compare graph optimisation levels")
    parser.add_argument(
        "--no-speed", action="store_true", help="only the ImageNet agreement, no timings"
    )
    args = parser.parse_args(argv)
    if min(args.images, args.calibration, args.rounds, args.threads) < 1:
        parser.error("--images, --calibration, --rounds and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    lines = []
    with tempfile.TemporaryDirectory(prefix="moths-bench-int8-") as name:
        if args.no_speed:
            args.backbones = []
        tmp = Path(name)
        paths = infer.write_images(tmp / "images", args.images + args.calibration)
        timed, calibration = paths[: args.images], paths[args.images :]
        for backbone in args.backbones:
            work = tmp / backbone
            work.mkdir()
            fp32, int8 = export_both(backbone, work, timed, calibration)
            classifier = OnnxClassifier.from_file(fp32, providers="cpu")
            batch = np.stack([classifier.preprocess(open_rgb(p)) for p in timed])
            what = f"{backbone}, {args.threads} threads"
            if args.levels:
                compare_levels(fp32, int8, batch, args)
            lines.append(model_only(fp32, int8, batch, args, what))
            lines.append(end_to_end(fp32, int8, timed, args, what))
    lines.append(int8_imagenet.imagenet_agreement(args.calibration, args.threads))
    print(*lines, sep="\n")


if __name__ == "__main__":
    main()
