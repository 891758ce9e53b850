"""``moths-export --onnx``: a checkpoint → one self-contained ONNX file (a classifier's
or a detector's: the checkpoint says which)."""

from __future__ import annotations

import argparse
import logging
import sys

from moths_framework.export import ExportError
from moths_framework.inference.inputs import InputError, collect_inputs
from moths_framework.model.checkpoint_meta import CheckpointError
from moths_framework.model.trust import TRUST_FLAG, TRUST_HELP, trusting_checkpoints
from moths_framework.output_folders import OutputFolderError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moths-export",
        description="Export a moths-fit checkpoint (classifier or detector) to ONNX, with "
        "labels, hierarchy and preprocessing inside, checked for parity with PyTorch.",
    )
    parser.add_argument("--onnx", action="store_true", required=True, help="export to ONNX")
    parser.add_argument("--ckpt", required=True, help="checkpoint, e.g. runs/<time>/best.ckpt")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="float16 weights, float32 in/out")
    precision.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantisation (CPUs with VNNI/AMX), calibrated on validation images",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing output moths-export wrote"
    )
    parser.add_argument("--no-features", action="store_true", help="omit the features output")
    parser.add_argument(TRUST_FLAG, action="store_true", help=TRUST_HELP)
    parser.add_argument(
        "--images",
        nargs="+",
        help="images, folders or @list.txt files for the parity check (a detector's: frames) "
        "(default: validation images recorded in the checkpoint)",
    )
    parser.add_argument(
        "--calibration",
        nargs="+",
        help="images, folders or @list.txt files for int8 calibration "
        "(default: validation images recorded in the checkpoint)",
    )
    parser.add_argument(
        "--calibration-images",
        type=_positive,
        default=256,
        metavar="N",
        help="how many images calibrate int8 (default 256)",
    )
    opts = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # torch is slow to import: after --help
    from moths_framework.export.onnx import export_onnx
    from moths_framework.model.detector_checkpoint import checkpoint_task

    try:
        with trusting_checkpoints(opts.trust_checkpoint):
            if checkpoint_task(opts.ckpt) == "detection":
                return _export_detector(opts)
            result = export_onnx(
                opts.ckpt,
                opts.output,
                fp16=opts.fp16,
                int8=opts.int8,
                features=not opts.no_features,
                force=opts.force,
                images=collect_inputs(opts.images) if opts.images else None,
                calibration=collect_inputs(opts.calibration) if opts.calibration else None,
                calibration_images=opts.calibration_images,
            )
    except (ExportError, CheckpointError, InputError, OutputFolderError) as err:
        print(f"moths-export: error: {err}", file=sys.stderr)
        return 2
    precision = "" if result.precision == "fp32" else f", {result.precision}"
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB{precision})")
    print(f"  {result.parity}")
    if result.int8 is not None:
        print(f"  {result.int8}")
    return 0


def _export_detector(opts: argparse.Namespace) -> int:
    """A detector's checkpoint: float32, no features, no calibration; else as a classifier's."""
    from moths_framework.export.detector_onnx import export_detector_checkpoint

    options = {
        "--fp16": opts.fp16,
        "--int8": opts.int8,
        "--no-features": opts.no_features,
        "--calibration": opts.calibration,
    }
    given = ", ".join(flag for flag, value in options.items() if value)
    if given:
        raise ExportError(f"{opts.ckpt} is a detector's checkpoint; for classifiers only: {given}")
    images = collect_inputs(opts.images) if opts.images else None
    result = export_detector_checkpoint(opts.ckpt, opts.output, images=images, force=opts.force)
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, detector)")
    print(f"  {result.parity}")
    return 0
