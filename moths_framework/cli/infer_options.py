"""``moths-infer``'s options, and what both of its runs (images; trap frames) set up from them.

Imports no torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moths_framework.inference import OnnxClassifier
from moths_framework.inference.inputs import InputError, collect_inputs
from moths_framework.inference.providers import EngineSettings
from moths_framework.inference.rollup import ROLLUP_METHODS
from moths_framework.inference.species_list import DEFAULT_MASK_MODE, MASK_MODES
from moths_framework.inference.thresholds import parse_thresholds
from moths_framework.output_folders import check_may_overwrite
from moths_framework.provenance import sidecar_path
from moths_framework.zoo.transport import INSECURE_FLAG, INSECURE_HELP

__all__ = [
    "FRAME_OPTIONS",
    "PROG",
    "check_numbers",
    "check_output",
    "input_paths",
    "open_classifier",
    "parser",
]

PROG = "moths-infer"
# Options of a run with --detector only (their argparse destinations).
FRAME_OPTIONS = {
    "crops": "--crops",
    "min_score": "--min-score",
    "max_detections": "--max-detections",
    "crop_margin": "--crop-margin",
    "features": "--features",
}


def parser() -> argparse.ArgumentParser:
    """The command line of ``moths-infer``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Classify moth images with a model exported by moths-export (ONNX Runtime); "
        "with --detector, find the moths on trap frames first and classify each crop.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files (trap frames with --detector), folders (searched recursively) "
        "or @list.txt",
    )
    p.add_argument("--model", help="the .onnx file from moths-export, or zoo:ID[@VERSION]")
    p.add_argument(
        "--output",
        required=True,
        help="predictions file: .csv, or .jsonl for JSON Lines with top-k (with --detector: "
        "one row per detection); an existing file is overwritten only when moths-infer wrote it",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images (crops) per model call")
    p.add_argument("--top-k", type=int, default=5, help="classes kept per rank (JSONL)")
    p.add_argument(
        "--threshold",
        type=float,
        help="species threshold of the roll-up (wins over --thresholds); default: the "
        "model's calibrated thresholds, else 0.5",
    )
    p.add_argument(
        "--thresholds",
        default="",
        metavar="RANK=P,...",
        help="roll-up thresholds per rank, e.g. species=0.6,genus=0.5",
    )
    p.add_argument(
        "--rollup",
        choices=ROLLUP_METHODS,
        help="how coarse ranks get their probabilities; default: the model's calibrated "
        "method (independent heads when not calibrated)",
    )
    p.add_argument(
        "--species-list", metavar="FILE", help="only these species (one per line): a checklist"
    )
    p.add_argument(
        "--mask-mode",
        choices=MASK_MODES,
        default=DEFAULT_MASK_MODE,
        help="with --species-list, where unlisted classes' probability goes: 'other' "
        "(default; listed species keep their probability) or 'renormalize' (spread over "
        "the listed ones, as the AMI platform does)",
    )
    _frame_options(p)
    p.add_argument(
        "--providers", default="auto", help="'auto' (TensorRT, CUDA, CPU) or a comma list"
    )
    p.add_argument("--threads", type=int, help="ONNX Runtime CPU threads")
    p.add_argument(
        "--decode-workers",
        type=int,
        help="threads decoding the images classified whole, ahead of the model (default 4 on "
        "the CPU provider, 16 on a GPU provider); with --detector or --pipeline, the frames "
        "read at once, each held decoded (default 1 on the CPU provider, 4 on a GPU "
        "provider); never more than the cores by default",
    )
    p.add_argument(
        "--fast-decode",
        action=argparse.BooleanOptionalAction,
        help="decode JPEG images at the smallest reduced scale that covers the model's resize, "
        "as training's validation does (default for images; --no-fast-decode: full decode, "
        "torchvision's pixels exactly); with --detector, opt-in, for the detector's input "
        "(crops stay full resolution)",
    )
    p.add_argument(
        "--fp16-engine",
        action="store_true",
        help="TensorRT: build an fp16 engine for an fp32 model (fp16 models always get one)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(INSECURE_FLAG, action="store_true", help=INSECURE_HELP)
    return p


def _frame_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("trap frames (detector, then classifier)")
    group.add_argument(
        "--detector",
        help="a detector .onnx from moths-export, or zoo:ID[@VERSION]: find the moths on each "
        "frame, then classify each crop with --model (without --model: boxes only)",
    )
    group.add_argument(
        "--pipeline",
        metavar="FILE.yaml",
        help="a pipeline file (detector, moth filter, classifier, their thresholds: "
        "docs/commands/pipelines.md), instead of --detector and --model; the options above "
        "and below win over the file's",
    )
    group.add_argument(
        "--crops", metavar="DIR", help="save each crop as DIR/<frame no>_<frame>_<detection>.jpg"
    )
    group.add_argument(
        "--min-score", type=float, help="keep boxes scoring at least S; default: the detector's"
    )
    group.add_argument(
        "--max-detections", type=int, help="keep at most N boxes a frame; default: the detector's"
    )
    group.add_argument(
        "--crop-margin",
        type=int,
        metavar="PX",
        help="pixels added around each box before it is cut (clamped to the frame); default 0",
    )
    group.add_argument(
        "--features",
        metavar="FILE",
        help="with --model: write each crop's feature vector to FILE (.npy, or .parquet with "
        "pyarrow), row i for detections.csv's row i; NaN on rows without a crop (for moths-track)",
    )


def check_output(opts: argparse.Namespace) -> Path:
    """``--output``, checked before any work: a file moths-infer may write, in a folder
    that exists (and its run.json). Raises ValueError (OutputFolderError) or OSError."""
    output = Path(opts.output)
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; name a .csv or .jsonl file")
    check_may_overwrite(output.parent, [output.name, sidecar_path(output).name], PROG)
    output.parent.mkdir(parents=True, exist_ok=True)  # fails now, not after the whole run
    return output


def check_numbers(opts: argparse.Namespace) -> None:
    """Option values that cannot work; ValueError naming the option."""
    if opts.batch_size < 1 or opts.top_k < 1:
        raise ValueError("--batch-size and --top-k must be at least 1")
    if opts.threads is not None and opts.threads < 1:  # ONNX Runtime would take it as "default"
        raise ValueError(f"--threads must be at least 1, got {opts.threads}")
    if opts.decode_workers is not None and opts.decode_workers < 1:
        raise ValueError(f"--decode-workers must be at least 1, got {opts.decode_workers}")


def input_paths(opts: argparse.Namespace) -> list[str]:
    """The input files, in order; InputError when there are none."""
    paths = collect_inputs(opts.inputs)
    if not paths:
        raise InputError(f"no image files found in {' '.join(opts.inputs)}")
    return paths


def open_classifier(
    opts: argparse.Namespace, thresholds: dict[str, float] | None = None
) -> OnnxClassifier:
    """The classifier ``--model`` names, with the roll-up and species-list options;
    ``thresholds`` (a pipeline file's) under ``--thresholds`` and ``--threshold``."""
    return OnnxClassifier.from_file(
        opts.model,
        opts.providers,
        thresholds={**(thresholds or {}), **_thresholds(opts)},
        species_list=opts.species_list,
        mask_mode=opts.mask_mode,
        num_threads=opts.threads,
        decode_workers=opts.decode_workers,
        fast_decode=opts.fast_decode is not False,  # on unless --no-fast-decode
        rollup=opts.rollup,
        engine=EngineSettings(opts.batch_size, True if opts.fp16_engine else None),
        features=getattr(opts, "features", None) is not None,
    )


def _thresholds(opts: argparse.Namespace) -> dict[str, float]:
    """``--thresholds`` then ``--threshold`` (species), as rank -> value."""
    try:
        thresholds = parse_thresholds(opts.thresholds)
    except ValueError as error:
        raise ValueError(f"--thresholds: {error}") from None
    if opts.threshold is not None:
        thresholds["species"] = opts.threshold
    return thresholds
