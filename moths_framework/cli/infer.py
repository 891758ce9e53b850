"""``moths-infer``: classify images with an exported model on ONNX Runtime; with
``--detector``, find the moths on trap frames and classify each crop. Imports no torch."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tqdm import tqdm

from moths_framework.cli import infer_frames
from moths_framework.cli.infer_options import (
    FRAME_OPTIONS,
    PROG,
    check_numbers,
    check_output,
    input_paths,
    open_classifier,
    parser,
)
from moths_framework.cli.infer_provenance import record_infer_run
from moths_framework.inference import OnnxClassifier
from moths_framework.inference.writers import PredictionWriter
from moths_framework.output_folders import record_written
from moths_framework.provenance import Run
from moths_framework.zoo.transport import allowing_insecure_http


def _load(opts: argparse.Namespace) -> tuple[OnnxClassifier, list[str]]:
    """The classifier and the input paths; ValueError/OSError for usage errors."""
    given = [flag for dest, flag in FRAME_OPTIONS.items() if getattr(opts, dest) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} work on trap frames: add --detector DET.onnx or --pipeline P.yaml"
        )
    if opts.model is None:
        raise ValueError(
            "give --model (classify images), --detector (trap frames), or both; "
            "or --pipeline P.yaml"
        )
    check_numbers(opts)
    check_output(opts)  # OutputFolderError: a ValueError
    paths = input_paths(opts)
    return open_classifier(opts), paths


def main(args: list[str] | None = None) -> int:
    """Run ``moths-infer``.

    Returns:
        0 when at least one image (frame) was classified (searched), 1 when none
        could be, 2 on a usage error (missing model, no inputs, bad option value,
        an ``--output`` file that moths-infer did not write).
    """
    opts = parser().parse_args(args)
    run = Run(PROG, args)
    logging.basicConfig(format=f"{PROG}: %(message)s")
    logging.getLogger("moths_framework").setLevel(logging.INFO)
    if opts.detector is not None or opts.pipeline is not None:
        return infer_frames.run(opts, run)
    try:
        with allowing_insecure_http(opts.allow_insecure_http):
            classifier, paths = _load(opts)
    except (OSError, ValueError) as error:  # ModelFormatError, SpeciesListError are ValueErrors
        print(f"{PROG}: error: {error}", file=sys.stderr)
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
    record_written(output.parent, [output.name], PROG)
    record_infer_run(run, opts, len(paths), classifier)
    seconds = time.perf_counter() - started
    errors = len(paths) - classified
    print(
        f"{PROG}: {classified} of {len(paths)} images classified, "
        f"{errors} error{'s' * (errors != 1)}, on {classifier.provider}, "
        f"{len(paths) / max(seconds, 1e-9):.1f} images/s; wrote {opts.output}"
    )
    return 0 if classified else 1


if __name__ == "__main__":
    sys.exit(main())
