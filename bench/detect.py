"""Benchmark trap frames end to end: ONNX Runtime's ``Pipeline`` against a PyTorch user's best.

Writes ``--frames`` synthetic 2048x1536 trap frames (JPEG, quality 90: moth crops
of ``test_data/source_a`` pasted on generated sheets by
``moths_framework.data.synth_frames``), builds a detector (``--detector``, a
torchvision model of ``moths-plugin-torchvision``, default AMI's
``fasterrcnn_mobilenet_v3_large_fpn``, random weights spread so every box has its
own score) and ``bench/infer.py``'s classifier (``efficientnet_b0`` 224 px, 50
species), and exports both with the real exporters (parity checks included).
Both sides keep the ``--detections`` best boxes a frame (no score cut: random
weights score anything), so both classify as many crops. Then, end to end from
the JPEG files to each crop's species, in the same run:

(a) ``Pipeline(OnnxDetector, OnnxClassifier)``: a thread decodes the next frame
    (EXIF applied) and shrinks it to the detector's working size as the model would
    while the models run; the crops are cut from the full frame and classified in
    one batch;
(b) the PyTorch user's loop, two ways, the faster kept: ``plain`` (decode, the
    whole frame as a tensor into the model, which resizes it itself, crops through
    ``eval_transform``) and ``prefetch`` (a ``DataLoader`` worker decodes the next
    frame and shrinks it as (a) does); ``torch.inference_mode()``,
    ``channels_last`` for each model if that runs it faster here (timed first).

Each side runs with 1 and with ``--threads`` compute threads (ONNX Runtime's
intra-op threads; ``torch.set_num_threads``): on a machine other jobs share,
PyTorch's OpenMP threads can run several times slower than one thread. Every
setting is timed over ``--sweep-rounds`` passes and each side keeps its fastest;
then the rounds alternate the two (who goes first alternates too) and the result
compares their median rates. With ``--memory-frame WxH`` (default 8000x6000; ``none`` to
skip) it also measures the peak memory (RSS) of one such frame through each side,
each in a fresh process: ``Pipeline`` (no torch in it) and the ``plain`` loop.

Run: ``.venv/bin/python bench/detect.py [--frames 8] [--rounds 3] [--threads N]
[--detector NAME] [--detections 20] [--memory-frame 8000x6000]``. The last line
printed is the result: ``detect: ort X frames/s, torch best Y frames/s, N.NNx``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import infer  # bench/infer.py: the classifier, its export and the timing helpers
import torch
from moths_plugin_torchvision import TorchvisionDetector
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from moths_framework.data.synth_crops import CropPool, CropSources
from moths_framework.data.synth_frames import SynthSettings, synthesize
from moths_framework.data.transforms import eval_transform
from moths_framework.export.detector_onnx import export_detector_onnx
from moths_framework.inference import OnnxClassifier, OnnxDetector, Pipeline
from moths_framework.inference.detector import resized_as_the_graph
from moths_framework.testing.detectors import spread_weights

REPO = Path(__file__).resolve().parents[1]
CROPS = REPO / "test_data" / "source_a"
FRAME_SIZE = (2048, 1536)
DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"


def write_frames(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[str]:
    """``count`` synthetic trap frames, 10 to 30 moths each, as JPEG files."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = SynthSettings(frames=count, width=size[0], height=size[1], density=(10, 30),
                             seed=seed)  # fmt: skip
    paths = []
    for frame in synthesize(settings, CropPool(CropSources([CROPS]))):
        path = folder / f"frame_{frame.index:03d}.jpg"
        frame.image.save(path, quality=90)
        paths.append(str(path))
    return paths


def tensor_of(image: Image.Image) -> torch.Tensor:
    """An RGB image as a float ``(3, H, W)`` tensor in [0, 1]."""
    return pil_to_tensor(image).float().div_(255)


def build_detector(name: str, detections: int, tmp: Path, frames: list[str]):
    """The detector (random weights spread over a frame) and its export; returns
    ``(detector, model, onnx path)``."""
    torch.manual_seed(0)
    detector = TorchvisionDetector(name, score_threshold=0.0, max_detections=detections)
    frame = tensor_of(Image.open(frames[0]).convert("RGB"))
    model = spread_weights(detector.build(1).eval(), [frame])
    path = tmp / "detector.onnx"
    # parity on the exporter's own synthetic frames: a random network ties scores often on
    # big frames, and a tie at the max_detections cut is not a difference of the export
    result = export_detector_onnx(detector, model, ["moth"], path, parity_min_score=0.0)
    print(f"exported {path.name} ({result.size_bytes / 1e6:.1f} MB): {result.parity}")
    return detector, model, path


class Frames(Dataset):
    """The PyTorch user's frames for the ``prefetch`` loop: the frame (EXIF applied) and
    the detector's input, the frame shrunk to its working size by Pillow as the model
    itself would shrink it (so the model's own resize keeps the size)."""

    def __init__(self, paths: list[str], detector: TorchvisionDetector) -> None:
        self.paths = paths
        self.pre = detector.preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.paths[index]) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        height, width = self.pre.model_size(image.height, image.width)
        return pil_to_tensor(image), tensor_of(resized_as_the_graph(image, (width, height)))


class TorchLoop:
    """The PyTorch side: the detector and the classifier, eager, and its two loops; on a
    CUDA ``device`` the models run there under fp16 autocast (``bench/gpu.py``)."""

    def __init__(self, detector, det_model, classifier, paths: list[str], device: str = "cpu"):
        self.device = torch.device(device)
        self.det_model = det_model.to(self.device)
        self.classifier = classifier.to(self.device)
        self.classifier_channels_last = False
        self.transform = eval_transform(classifier.preprocessing)
        self.paths = paths
        loader = DataLoader(Frames(paths, detector), batch_size=None, num_workers=1,
                            persistent_workers=True, prefetch_factor=1)  # fmt: skip
        self.loops = {"plain": self.plain, "prefetch": lambda: self.prefetch(loader)}

    def plain(self) -> list[list[int]]:
        """Decode, the whole frame into the model, crops through ``eval_transform``."""
        species = []
        with self.running():
            for path in self.paths:
                with Image.open(path) as opened:
                    image = ImageOps.exif_transpose(opened).convert("RGB")
                boxes = self.det_model([tensor_of(image).to(self.device)])[0]["boxes"]
                species.append(self.classify(image, boxes.float().cpu()))
        return species

    def prefetch(self, loader: DataLoader) -> list[list[int]]:
        """A worker decodes and shrinks the next frame while the models run."""
        species = []
        with self.running():
            for full, small in loader:
                boxes = self.det_model([small.to(self.device)])[0]["boxes"].float().cpu()
                sx, sy = full.shape[2] / small.shape[2], full.shape[1] / small.shape[1]
                image = Image.fromarray(full.permute(1, 2, 0).numpy())
                species.append(self.classify(image, boxes * torch.tensor([sx, sy, sx, sy])))
        return species

    def classify(self, image: Image.Image, boxes: torch.Tensor) -> list[int]:
        """The species index of each box's crop (cut as the pipeline cuts it)."""
        if len(boxes) == 0:
            return []
        crops = [self.transform(image.crop(_pixels(box))) for box in boxes.tolist()]
        batch = torch.stack(crops).to(self.device)
        if self.classifier_channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.classifier(batch)[0].argmax(1).tolist()

    def running(self) -> contextlib.ExitStack:
        """Inference mode, and fp16 autocast on a CUDA device."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.device.type == "cuda":
            stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
        return stack


def _pixels(box: list[float]) -> tuple[int, int, int, int]:
    """A box rounded outwards to whole pixels, at least one each way."""
    left, top = math.floor(box[0]), math.floor(box[1])
    return left, top, max(math.ceil(box[2]), left + 1), max(math.ceil(box[3]), top + 1)


def choose_channels_last(model: torch.nn.Module, run: Callable[[], object], label: str) -> bool:
    """Time ``run`` with ``model`` in both memory formats (alternating); keep the faster."""
    times: dict[bool, list[float]] = {False: [], True: []}
    with torch.inference_mode():
        for r in range(3):
            for last in (False, True) if r % 2 == 0 else (True, False):
                model.to(memory_format=torch.channels_last if last else torch.contiguous_format)
                elapsed = infer.seconds(run)
                if r > 0:  # the first round warms up
                    times[last].append(elapsed)
    plain, last = statistics.median(times[False]), statistics.median(times[True])
    print(f"torch {label}: {plain * 1e3:.0f} ms, channels_last {last * 1e3:.0f} ms")
    model.to(memory_format=torch.channels_last if last < plain else torch.contiguous_format)
    return last < plain


def ort_species(pipeline: Pipeline, paths: list[str]) -> list[list[str]]:
    """End to end through the production API: each frame's crops' species top-1."""
    results = list(pipeline.run(paths))
    failed = [r.source for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"the pipeline could not read {failed[:3]}")
    return [[d.prediction.top1("species")[0] for d in r.detections] for r in results]


def agreement(ort: list[list[str]], eager: list[list[int]], classes: list[str]) -> str:
    """How often the two sides name the same species for the same box (by rank order)."""
    frames = zip(ort, eager, strict=True)
    pairs = [(o, classes[t]) for a, b in frames for o, t in zip(a, b, strict=False)]
    crops = sum(len(a) for a in ort), sum(len(b) for b in eager)
    same = sum(o == t for o, t in pairs) / max(len(pairs), 1)
    return f"crops ort {crops[0]}, torch {crops[1]}; species top-1 agreement {same:.1%}"


def measure(
    args, pipelines: dict[int, Pipeline], loop: TorchLoop, paths: list[str]
) -> str:  # fmt: skip
    """Choose each side's best setting (loop, threads), then alternate the two; the result."""
    runs: dict[str, Callable[[], object]] = {
        f"ort, {n} threads": lambda p=pipeline: ort_species(p, paths)
        for n, pipeline in pipelines.items()
    }
    for name, run in loop.loops.items():
        for n in pipelines:  # on a busy machine fewer OpenMP threads may run faster
            runs[f"torch {name}, {n} threads"] = lambda run=run, n=n: _threads(n, run)
    best = infer.sweep(runs, args.sweep_rounds, len(paths))  # frames/s, printed as img/s
    ort_name = max((r for r in runs if r.startswith("ort")), key=best.get)
    torch_name = max((r for r in runs if r.startswith("torch")), key=best.get)
    classes = loop.classifier.hierarchy.classes("species")
    print(agreement(ort_species(pipelines[args.threads], paths), loop.loops["prefetch"](), classes)
          + " (torch prefetch: the same detector input)")  # fmt: skip
    rates = infer.alternate({"ort": runs[ort_name], "torch": runs[torch_name]}, args.rounds,
                            len(paths))  # fmt: skip
    ort_rates, torch_rates = rates["ort"], rates["torch"]
    ratios = [o / t for o, t in zip(ort_rates, torch_rates, strict=True)]
    print(f"  {ort_name}: frames/s per round {', '.join(f'{v:.2f}' for v in ort_rates)}")
    print(f"  {torch_name}: frames/s per round {', '.join(f'{v:.2f}' for v in torch_rates)}")
    print(f"  ratio per round: {', '.join(f'{v:.2f}' for v in ratios)}")
    if max(ratios) > 1.25 * min(ratios):
        print("  note: the ratio varied by more than 25% across rounds; the machine was busy")
    ort_rate, torch_rate = statistics.median(ort_rates), statistics.median(torch_rates)
    return (
        f"detect: ort {ort_rate:.2f} frames/s, torch best {torch_rate:.2f} frames/s, "
        f"{ort_rate / torch_rate:.2f}x"
    )


def _threads(count: int, run: Callable[[], object]) -> object:
    torch.set_num_threads(count)
    return run()


# Peak memory of the frame alone: the kernel's high-water mark of resident memory (VmHWM,
# per process image, unlike getrusage's ru_maxrss, which keeps the forking parent's), reset
# once the models are loaded (writing 5 to clear_refs, Linux 4.0+).
_PEAK = """
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
"""
_ORT_PEAK = (
    _PEAK
    + """
import json, sys
from moths_framework.inference import OnnxClassifier, OnnxDetector, Pipeline
detector, classifier, warm_up, frame, threads = sys.argv[1:6]
pipeline = Pipeline(OnnxDetector.from_file(detector, "cpu", num_threads=int(threads)),
                    OnnxClassifier.from_file(classifier, "cpu", num_threads=int(threads)))
(result,) = pipeline.run([warm_up])  # ONNX Runtime sizes its memory on the first runs
loaded = rss("VmRSS"); reset_peak()
(result,) = pipeline.run([frame])
boxes = [d.crop_box for d in result.detections]
crops = sum((x2 - x1) * (y2 - y1) * 3 for x1, y1, x2, y2 in boxes) / 2**20
print(json.dumps({"loaded": loaded, "peak": rss("VmHWM"), "torch": "torch" in sys.modules,
                  "crops": crops, "boxes": len(boxes)}))
"""
)
_TORCH_PEAK = (
    _PEAK
    + """
import json, math, sys, torch
from PIL import Image, ImageOps
from torchvision.transforms.functional import pil_to_tensor
from moths_framework.data.transforms import eval_transform
detector, classifier, warm_up, frame, threads = sys.argv[1:6]
torch.set_num_threads(int(threads))
det, cls = torch.load(detector, weights_only=False), torch.load(classifier, weights_only=False)
crop = eval_transform(cls.preprocessing)

def run(path):
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    boxes = det([pil_to_tensor(image).float() / 255])[0]["boxes"].tolist()
    cut = lambda x1, y1, x2, y2: image.crop((int(x1), int(y1), max(math.ceil(x2), int(x1) + 1),
                                             max(math.ceil(y2), int(y1) + 1)))
    return cls(torch.stack([crop(cut(*box)) for box in boxes]))[0].argmax(1)

with torch.inference_mode():
    run(warm_up)
    loaded = rss("VmRSS"); reset_peak()
    run(frame)
print(json.dumps({"loaded": loaded, "peak": rss("VmHWM")}))
"""
)


def memory(args, tmp: Path, det_path: Path, cls_path: Path, det_model, classifier,
           warm_up: str) -> str:  # fmt: skip
    """Peak RSS of one large frame through each side, each in a fresh process, after a
    first frame (``warm_up``) went through."""
    (frame,) = write_frames(tmp / "large", 1, args.memory_frame, seed=1)
    torch.save(det_model, tmp / "detector.pt")
    torch.save(classifier, tmp / "classifier.pt")
    sides = {
        "ort": (_ORT_PEAK, (det_path, cls_path)),
        "torch": (_TORCH_PEAK, (tmp / "detector.pt", tmp / "classifier.pt")),
    }
    peaks = {}
    for side, (code, files) in sides.items():
        argv = [sys.executable, "-c", code, *map(str, files), warm_up, frame, str(args.threads)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the {side} memory run failed: {done.stderr[-2000:]}")
        peaks[side] = json.loads(done.stdout.strip().splitlines()[-1])
    ort, eager = peaks["ort"], peaks["torch"]
    width, height = args.memory_frame
    return (
        f"memory, one {width}x{height} frame: ort peak RSS {ort['peak']:.0f} MB "
        f"({ort['loaded']:.0f} MB before it; torch imported: {ort['torch']}; its "
        f"{ort['boxes']} crops {ort['crops']:.0f} MB), "
        f"torch plain loop {eager['peak']:.0f} MB ({eager['loaded']:.0f} MB before it)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="2048x1536 trap frames")
    parser.add_argument("--size", default="2048x1536", help="frame size, WxH")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the best two")
    parser.add_argument("--sweep-rounds", type=int, default=1, help="passes choosing the loop")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--detector", default=DETECTOR, help="a moths-plugin-torchvision model")
    parser.add_argument("--detections", type=int, default=20, help="boxes kept a frame")
    parser.add_argument("--memory-frame", default="8000x6000", help="WxH, or none")
    args = parser.parse_args(argv)
    args.size = _size(parser, args.size)
    args.memory_frame = None if args.memory_frame == "none" else _size(parser, args.memory_frame)
    if min(args.frames, args.rounds, args.sweep_rounds, args.threads, args.detections) < 1:
        parser.error("--frames, --rounds, --sweep-rounds, --threads, --detections must be >= 1")
    return args


def _size(parser: argparse.ArgumentParser, text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        parser.error(f"a size is WxH, got {text!r}")
    return width, height


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="moths-bench-detect-") as name:
        tmp = Path(name)
        paths = write_frames(tmp / "frames", args.frames, args.size)
        detector, det_model, det_path = build_detector(args.detector, args.detections, tmp, paths)
        crops = sorted(str(p) for p in CROPS.rglob("*.jpg"))[:32]
        classifier = infer.build_model(tmp, crops)
        cls_path = infer.export(classifier, tmp, crops)
        pipelines = {
            n: Pipeline(
                OnnxDetector.from_file(det_path, "cpu", num_threads=n),
                OnnxClassifier.from_file(cls_path, "cpu", num_threads=n),
                top_k=1,
            )
            for n in sorted({1, args.threads})
        }
        print(
            f"{args.detector} + {infer.BACKBONE}, {args.frames} frames "
            f"{args.size[0]}x{args.size[1]}, {args.detections} boxes a frame, "
            f"{'1 thread' if args.threads == 1 else f'1 or {args.threads} threads'}, "
            f"{os.cpu_count()} cores"
        )
        loop = TorchLoop(detector, det_model, classifier, paths)
        with Image.open(paths[0]) as opened:
            frame = tensor_of(opened.convert("RGB"))
        choose_channels_last(det_model, lambda: det_model([frame]), "detector, one frame")
        batch = torch.stack([loop.transform(Image.open(p).convert("RGB")) for p in crops[:16]])
        loop.classifier_channels_last = choose_channels_last(
            classifier, lambda: classifier(batch), "classifier, 16 crops"
        )
        line = measure(args, pipelines, loop, paths)
        if args.memory_frame is not None:
            print(memory(args, tmp, det_path, cls_path, det_model, classifier, paths[0]))
    print(line)


if __name__ == "__main__":
    main()
