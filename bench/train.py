"""Benchmark the framework's training step against a bare PyTorch loop.

Both train the same timm backbone (through ``TimmBackbone``, random weights)
with one ``nn.Linear`` head per rank, the mean cross-entropy over the ranks,
AdamW (lr 1e-3) and the same batch size, on the same images: a generated
folder of small JPEGs (``<species>/<n>.jpg``) and a plain hierarchy CSV in a
temporary directory, read through ``SampleDataset`` with the default training
transform at ``--size`` pixels and ``num_workers=0``.

(a) framework: ``MothsDataModule`` + ``MothsClassifier`` + ``FullUnfreeze``
    driven by a Lightning ``Trainer`` (``max_steps``, CSV logger in the temp
    dir, no checkpointing, progress bar or validation);
(b) bare loop: ``DataLoader`` → forward → loss → ``backward`` → ``step``.

The two are interleaved step by step: after every framework step a callback
runs one bare step. Another process that grabs a core slows a 2-thread torch
step by up to 20x for seconds at a time; interleaving makes each framework
step and its bare partner see the same load. A framework step runs from the
end of the previous bare step to the end of its optimizer step (batch fetch,
every Lightning hook, logging); a bare step from there to the end of its own
optimizer step (its batch fetch included). The first ``--warmup`` pairs are
left out; the data set is sized so that the timed steps stay within one
epoch (per-epoch costs are paid once per epoch, not per step). The result is
the median over all timed pairs of framework time / bare time, over
``--rounds`` fresh runs.

Run: ``.venv/bin/python bench/train.py [--steps 30] [--batch-size 16] [--model resnet18]
[--size 96] [--rounds 3]``. The last line printed is the result:
``train: framework step time N.NNx of bare loop``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import logging
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from moths_plugin_timm import TimmBackbone
from PIL import Image, ImageDraw
from torch import nn
from torch.utils.data import DataLoader

from moths_framework.data.datamodule import MothsDataModule
from moths_framework.data.dataset import SampleDataset
from moths_framework.data.sources import ImageFolder
from moths_framework.data.transforms import train_transform
from moths_framework.hierarchy import CsvHierarchy
from moths_framework.model.heads import MultiHeadClassifier
from moths_framework.model.lightning import MothsClassifier
from moths_framework.preprocessing import Preprocessing
from moths_framework.train.unfreeze import FullUnfreeze

SPECIES = 6
IMAGE_SIDE = 128
TEST_FRACTION = 0.05  # val and test each; the rest trains


def synthetic_jpeg(rng: np.random.Generator, side: int) -> bytes:
    """A small JPEG with photo-like content: a colour gradient, shapes and noise."""
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    start, end = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    pixels = start + (end - start) * ramp[None, :, None] * ramp[:, None, None]
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, side, 2))
        r = int(rng.integers(4, side // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    noisy = np.asarray(image, np.int16) + rng.normal(0, 6, (side, side, 3)).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_dataset(root: Path, per_species: int) -> tuple[Path, Path]:
    """Write ``root/images/<species>/<n>.jpg`` and a plain hierarchy CSV; return both paths."""
    rng = np.random.default_rng(0)
    images = root / "images"
    rows = ["species,group,family,genus"]
    for s in range(SPECIES):
        species = f"Genus{s // 2} species{s}"
        rows.append(f"{species},group{s % 2},family{s // 3},Genus{s // 2}")
        folder = images / species
        folder.mkdir(parents=True)
        for n in range(per_species):
            (folder / f"{n}.jpg").write_bytes(synthetic_jpeg(rng, IMAGE_SIDE))
    hierarchy = root / "hierarchy.csv"
    hierarchy.write_text("\n".join(rows) + "\n")
    return images, hierarchy


def data_module(images: Path, hierarchy: Path, batch_size: int) -> MothsDataModule:
    source, labels = ImageFolder(images), CsvHierarchy(hierarchy)
    return MothsDataModule(source, labels, test_fraction=TEST_FRACTION, batch_size=batch_size)


def backbone(args: argparse.Namespace) -> TimmBackbone:
    torch.manual_seed(0)  # the same random weights in both
    return TimmBackbone(args.model, pretrained=False)


def input_preprocessing(net: TimmBackbone, args: argparse.Namespace) -> Preprocessing:
    return dataclasses.replace(net.preprocessing, input_size=(args.size, args.size))


class BareLoop:
    """The plain PyTorch training loop, one step per :meth:`step` call.

    It trains on the data module's training split with the same transform and
    batching, through a plain ``DataLoader`` (default collate), and starts a
    new epoch when one ends.
    """

    def __init__(self, args: argparse.Namespace, data: MothsDataModule) -> None:
        features = backbone(args)
        self.net = MultiHeadClassifier(features, data.hierarchy.num_classes()).train()
        heads = [p for name, p in self.net.named_parameters() if not name.startswith("backbone.")]
        groups = [{"params": heads}, {"params": list(features.parameters())}]
        self.optimizer = torch.optim.AdamW(groups, lr=1e-3)
        self.loss_fn = nn.CrossEntropyLoss()
        self.batches = self._batches(args, data, input_preprocessing(features, args))

    @staticmethod
    def _batches(
        args: argparse.Namespace, data: MothsDataModule, p: Preprocessing
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data.setup("fit")
        assert data.split is not None
        train = data.split.train
        samples, targets = [data.samples[i] for i in train], [data.targets[i] for i in train]
        dataset = SampleDataset(samples, targets, train_transform(p))
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
        return itertools.chain.from_iterable(itertools.repeat(loader))

    def step(self) -> None:
        images, targets = next(self.batches)
        logits = self.net(images)
        losses = [self.loss_fn(out, targets[:, i]) for i, out in enumerate(logits)]
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class PairedSteps(Callback):
    """After each framework step, one bare step; records when each of them ends."""

    def __init__(self, bare: BareLoop) -> None:
        self.bare = bare
        self.ends: list[tuple[float, float]] = []  # (framework step end, bare step end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        framework_end = time.perf_counter()
        self.bare.step()
        self.ends.append((framework_end, time.perf_counter()))

    def durations(self, warmup: int) -> list[tuple[float, float]]:
        """(framework, bare) step durations of the pairs after the first ``warmup``."""
        pairs = itertools.pairwise(self.ends[warmup - 1 :])
        return [(fw - prev_bare, bare - fw) for (_, prev_bare), (fw, bare) in pairs]


def run_round(
    args: argparse.Namespace, images: Path, hierarchy: Path, tmp: Path
) -> list[tuple[float, float]]:
    """One fresh framework run with its bare partner; the timed (framework, bare) pairs."""
    data = data_module(images, hierarchy, args.batch_size)
    net = backbone(args)
    model = MothsClassifier(
        net, hierarchy=data.hierarchy, preprocessing=input_preprocessing(net, args)
    )
    pairs = PairedSteps(BareLoop(args, data_module(images, hierarchy, args.batch_size)))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.warmup + args.steps,
        max_epochs=-1,
        logger=CSVLogger(tmp / "logs"),
        log_every_n_steps=10,  # so that logger writes fall among the timed steps
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[FullUnfreeze(), pairs],
        default_root_dir=tmp,
    )
    trainer.fit(model, datamodule=data)
    return pairs.durations(args.warmup)


def quiet_lightning() -> None:
    """Lightning's start-up hints (no GPU used, few workers, ...) would bury the result."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed step pairs per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed step pairs first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="resnet18", help="a timm model name")
    parser.add_argument("--size", type=int, default=96, help="input side in pixels")
    parser.add_argument("--rounds", type=int, default=3, help="fresh runs")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("--warmup, --steps and --rounds must be >= 1")
    return args


def images_per_species(args: argparse.Namespace) -> int:
    """Enough images that every run's steps fall within its first epoch."""
    train_images = (args.warmup + args.steps + 1) * args.batch_size
    return math.ceil(train_images / (1 - 2 * TEST_FRACTION) / SPECIES) + 2


def describe(label: str, pairs: list[tuple[float, float]]) -> str:
    framework, bare = zip(*pairs, strict=True)
    ratio = statistics.median(fw / b for fw, b in pairs)
    return (
        f"{label}: median step framework {statistics.median(framework) * 1e3:.1f} ms, "
        f"bare {statistics.median(bare) * 1e3:.1f} ms; mean framework "
        f"{statistics.fmean(framework) * 1e3:.1f} ms, bare {statistics.fmean(bare) * 1e3:.1f} ms; "
        f"median pair ratio {ratio:.3f}x"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_lightning()
    print(
        f"{args.model} at {args.size}px, batch {args.batch_size}, "
        f"{SPECIES * images_per_species(args)} images, {args.steps} timed step pairs after "
        f"{args.warmup}, torch threads {torch.get_num_threads()}"
    )
    pairs: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="moths-bench-train-") as tmp:
        images, hierarchy = make_dataset(Path(tmp), images_per_species(args))
        for r in range(args.rounds):
            timed = run_round(args, images, hierarchy, Path(tmp))
            print(describe(f"round {r + 1}", timed))
            pairs += timed
    print(describe("all rounds", pairs))
    ratio = statistics.median(fw / bare for fw, bare in pairs)
    print(f"train: framework step time {ratio:.2f}x of bare loop")


if __name__ == "__main__":
    main()
