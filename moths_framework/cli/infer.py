"""``moths-infer``: classify images with an exported model on ONNX Runtime. Imports no torch."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tqdm import tqdm

from moths_framework.inference import OnnxClassifier
from moths_framework.inference.inputs import InputError, collect_inputs
from moths_framework.inference.providers import EngineSettings
from moths_framework.inference.rollup import ROLLUP_METHODS
from moths_framework.inference.species_list import DEFAULT_MASK_MODE, MASK_MODES
from moths_framework.inference.thresholds import parse_thresholds
from moths_framework.inference.writers import PredictionWriter
from moths_framework.output_folders import check_may_overwrite, record_written
from moths_framework.zoo.transport import INSECURE_FLAG, INSECURE_HELP, allowing_insecure_http

_PROG = "moths-infer"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Classify moth images with a model exported by moths-export (ONNX Runtime).",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively) or @list.txt",
    )
    parser.add_argument(
        "--model", required=True, help="the .onnx file from moths-export, or zoo:ID[@VERSION]"
    )
    parser.add_argument(
        "--output",
        required=True,
        help="predictions file: .csv, or .jsonl for JSON Lines with top-k; an existing "
        "file is overwritten only when moths-infer wrote it",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call")
    parser.add_argument("--top-k", type=int, default=5, help="classes kept per rank (JSONL)")
    parser.add_argument(
        "--threshold",
        type=float,
        help="species threshold of the roll-up (wins over --thresholds); default: the "
        "model's calibrated thresholds, else 0.5",
    )
    parser.add_argument(
        "--thresholds",
        default="",
        metavar="RANK=P,...",
        help="roll-up thresholds per rank, e.g. species=0.6,genus=0.5",
    )
    parser.add_argument(
        "--rollup",
        choices=ROLLUP_METHODS,
        help="how coarse ranks get their probabilities; default: the model's calibrated "
        "method (independent heads when not calibrated)",
    )
    parser.add_argument(
        "--species-list",
        metavar="FILE",
        help="only these species (one per line): a regional checklist",
    )
    parser.add_argument(
        "--mask-mode",
        choices=MASK_MODES,
        default=DEFAULT_MASK_MODE,
        help="with --species-list, where unlisted classes' probability goes: 'other' "
        "(default; listed species keep their probability) or 'renormalize' (spread over "
        "the listed ones, as the AMI platform does)",
    )
    parser.add_argument(
        "--providers",
        default="auto",
        help="'auto' (TensorRT, CUDA, CPU) or a comma list, e.g. cuda,cpu",
    )
    parser.add_argument("--threads", type=int, help="ONNX Runtime CPU threads")
    parser.add_argument(
        "--fast-decode",
        action="store_true",
        help="decode JPEGs at reduced scale: faster, not bit-equal",
    )
    parser.add_argument(
        "--fp16-engine",
        action="store_true",
        help="TensorRT: build an fp16 engine for an fp32 model (fp16 models always get one)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(INSECURE_FLAG, action="store_true", help=INSECURE_HELP)
    return parser


def _thresholds(opts: argparse.Namespace) -> dict[str, float]:
    """``--thresholds`` then ``--threshold`` (species), as rank -> value."""
    try:
        thresholds = parse_thresholds(opts.thresholds)
    except ValueError as error:
        raise ValueError(f"--thresholds: {error}") from None
    if opts.threshold is not None:
        thresholds["species"] = opts.threshold
    return thresholds


def _load(opts: argparse.Namespace) -> tuple[OnnxClassifier, list[str]]:
    """The classifier and the input paths; ValueError/OSError for usage errors."""
    if opts.batch_size < 1 or opts.top_k < 1:
        raise ValueError("--batch-size and --top-k must be at least 1")
    if opts.threads is not None and opts.threads < 1:  # ONNX Runtime would take it as "default"
        raise ValueError(f"--threads must be at least 1, got {opts.threads}")
    output = Path(opts.output)
    if output.is_dir():
        raise ValueError(f"--output {output} is a directory; name a .csv or .jsonl file")
    check_may_overwrite(output.parent, [output.name], _PROG)  # OutputFolderError: a ValueError
    output.parent.mkdir(parents=True, exist_ok=True)  # fails now, not after the whole run
    paths = collect_inputs(opts.inputs)
    if not paths:
        raise InputError(f"no image files found in {' '.join(opts.inputs)}")
    classifier = OnnxClassifier.from_file(
        opts.model,
        opts.providers,
        thresholds=_thresholds(opts),
        species_list=opts.species_list,
        mask_mode=opts.mask_mode,
        num_threads=opts.threads,
        fast_decode=opts.fast_decode,
        rollup=opts.rollup,
        engine=EngineSettings(opts.batch_size, True if opts.fp16_engine else None),
    )
    return classifier, paths


def main(args: list[str] | None = None) -> int:
    """Run ``moths-infer``.

    Returns:
        0 when at least one image was classified, 1 when none could be, 2 on a
        usage error (missing model, no inputs, bad option value, an ``--output``
        file that moths-infer did not write).
    """
    opts = _parser().parse_args(args)
    logging.basicConfig(format=f"{_PROG}: %(message)s")
    logging.getLogger("moths_framework").setLevel(logging.INFO)
    try:
        with allowing_insecure_http(opts.allow_insecure_http):
            classifier, paths = _load(opts)
    except (OSError, ValueError) as error:  # ModelFormatError, SpeciesListError are ValueErrors
        print(f"{_PROG}: error: {error}", file=sys.stderr)
        return 2
    started, classified = time.perf_counter(), 0
    predictions = classifier.predict_iter(paths, opts.top_k, opts.batch_size)
    novelty = classifier.novelty is not None
    with PredictionWriter(opts.output, classifier.hierarchy.ranks, novelty) as writer:
        bar = tqdm(
            predictions, total=len(paths), unit="img", file=sys.stderr, disable=opts.no_progress
        )
        for prediction in bar:
            writer.write(prediction)
            classified += prediction.ok
    output = Path(opts.output)
    record_written(output.parent, [output.name], _PROG)
    seconds = time.perf_counter() - started
    errors = len(paths) - classified
    print(
        f"{_PROG}: {classified} of {len(paths)} images classified, "
        f"{errors} error{'s' * (errors != 1)}, on {classifier.provider}, "
        f"{len(paths) / max(seconds, 1e-9):.1f} images/s; wrote {opts.output}"
    )
    return 0 if classified else 1


if __name__ == "__main__":
    sys.exit(main())
