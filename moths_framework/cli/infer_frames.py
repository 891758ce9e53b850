"""``moths-infer --detector`` or ``--pipeline``: trap frames to ``detections.csv``, one row
per detection.

Parses nothing itself (:mod:`.infer_options` does); sets up a
:class:`~moths_framework.inference.Pipeline` from the options (or from a pipeline
file, :mod:`~moths_framework.inference.pipeline_file`, the options winning over
its values), runs it over the frames and writes the rows (and, with ``--crops``,
the crops). Imports no torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from moths_framework.cli.infer_options import (
    PROG,
    check_numbers,
    check_output,
    input_paths,
    open_classifier,
)
from moths_framework.cli.infer_provenance import record_infer_run
from moths_framework.inference import FrameResult, OnnxClassifier, OnnxDetector, Pipeline
from moths_framework.inference.crop_folder import CropFolder
from moths_framework.inference.detection_writer import DetectionWriter
from moths_framework.inference.feature_file import FeatureRows, check_feature_path
from moths_framework.inference.pipeline import MothFilter, WholeFrame, default_frame_workers
from moths_framework.inference.pipeline_file import PipelineSpec, read_pipeline_file
from moths_framework.inference.providers import CPU
from moths_framework.output_folders import check_may_overwrite, record_written
from moths_framework.provenance import Run, sidecar_path
from moths_framework.zoo.transport import allowing_insecure_http

__all__ = ["run"]


@dataclass
class _Counts:
    frames: int = 0  # searched
    errors: int = 0
    detections: int = 0
    empty: int = 0  # searched, nothing found
    non_moths: int = 0  # the moth filter stopped them

    def add(self, frame: FrameResult) -> None:
        if not frame.ok:
            self.errors += 1
            return
        self.frames += 1
        self.detections += len(frame.detections)
        self.empty += not frame.detections
        self.non_moths += sum(d.filter_class is not None and d.prediction is None for d in
                              frame.detections)  # fmt: skip


def run(opts: argparse.Namespace, record: Run) -> int:
    """Run ``moths-infer --detector``; the exit code (0: a frame was searched, 1: none
    could be, 2: a usage error). ``record``: this run's provenance, written beside the output."""
    try:
        with allowing_insecure_http(opts.allow_insecure_http):
            pipeline, paths, crops = _load(opts)
    except (OSError, ValueError) as error:  # ModelFormatError, ZooError are ValueErrors
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    started, counts = time.perf_counter(), _Counts()
    classifier = pipeline.classifier
    ranks = classifier.hierarchy.ranks if classifier else None
    novelty = classifier is not None and classifier.novelty is not None
    features = FeatureRows() if opts.features is not None else None
    moth_filter = pipeline.moth_filter is not None
    writer = DetectionWriter(opts.output, ranks, novelty, moth_filter)
    with writer, crops or nullcontext():
        frames = tqdm(
            pipeline.run(paths),
            total=len(paths),
            unit="frame",
            file=sys.stderr,
            disable=opts.no_progress,
        )
        for number, frame in enumerate(frames, start=1):
            files = [
                crops.save(found.crop, number, frame.source, k)
                for k, found in enumerate(frame.detections, start=1)
            ] if crops else []  # fmt: skip
            writer.write(frame, files)
            counts.add(frame)
            if features is not None:
                _add_features(features, frame)
    if features is not None:
        features.write(opts.features)
    output = Path(opts.output)
    record_written(output.parent, [output.name], PROG)
    detector = pipeline.detector if isinstance(pipeline.detector, OnnxDetector) else None
    record_infer_run(
        record, opts, len(paths), classifier, detector, opts.crop_margin, pipeline.moth_filter
    )
    print(_summary(counts, len(paths), pipeline, time.perf_counter() - started, opts.output))
    return 0 if counts.frames else 1


def _load(opts: argparse.Namespace) -> tuple[Pipeline, list[str], CropFolder | None]:
    """The pipeline, the frames and the crop folder; ValueError/OSError for usage errors."""
    check_numbers(opts)
    if opts.crop_margin is not None and opts.crop_margin < 0:
        raise ValueError(f"--crop-margin must be >= 0 pixels, got {opts.crop_margin}")
    if opts.max_detections is not None and opts.max_detections < 1:
        raise ValueError(f"--max-detections must be at least 1, got {opts.max_detections}")
    if opts.min_score is not None and not 0 <= opts.min_score <= 1:
        raise ValueError(f"--min-score must be in [0, 1], got {opts.min_score}")
    spec = _pipeline_file(opts)
    check_output(opts)  # OutputFolderError: a ValueError
    if opts.features is not None:
        if opts.model is None:
            raise ValueError("--features are the classifier's: add --model CLS.onnx")
        features = check_feature_path(opts.features)
        check_may_overwrite(features.parent, [sidecar_path(features).name], PROG)
    crops = CropFolder(opts.crops, PROG) if opts.crops is not None else None
    paths = input_paths(opts)
    detector = WholeFrame()
    if opts.detector is not None:
        detector = OnnxDetector.from_file(
            opts.detector,
            opts.providers,
            min_score=opts.min_score,
            max_detections=opts.max_detections,
            num_threads=opts.threads,
            fast_decode=bool(opts.fast_decode),  # the detector's: only when asked for
        )
    thresholds = spec.classifier.thresholds if spec is not None else None
    classifier = open_classifier(opts, thresholds) if opts.model is not None else None
    first = detector if isinstance(detector, OnnxDetector) else classifier  # works on frames
    frame_workers = opts.decode_workers or default_frame_workers(
        first.provider if first is not None else CPU
    )
    pipeline = Pipeline(
        detector,
        classifier,
        moth_filter=_moth_filter(opts, spec),
        crop_margin=opts.crop_margin or 0,
        top_k=opts.top_k,
        batch_size=opts.batch_size,
        keep_crops=crops is not None,
        frame_workers=frame_workers,
    )
    return pipeline, paths, crops


def _add_features(rows: FeatureRows, frame: FrameResult) -> None:
    """One row per detections.csv row of ``frame`` (NaN where no crop was classified)."""
    if not frame.ok or not frame.detections:
        rows.add(None)
    for found in frame.detections:
        rows.add(found.prediction.features if found.prediction is not None else None)


def _pipeline_file(opts: argparse.Namespace) -> PipelineSpec | None:
    """``--pipeline``'s file, its values put in the options the command line left unset."""
    if opts.pipeline is None:
        return None
    if opts.detector is not None or opts.model is not None:
        raise ValueError("give --pipeline, or --detector and --model: not both")
    spec = read_pipeline_file(opts.pipeline)  # PipelineFileError: a ValueError
    opts.model = spec.classifier.model
    if spec.detector is not None:
        opts.detector = spec.detector.model
        for name in ("min_score", "max_detections", "crop_margin"):
            if getattr(opts, name) is None:
                setattr(opts, name, getattr(spec.detector, name))
    return spec


def _moth_filter(opts: argparse.Namespace, spec: PipelineSpec | None) -> MothFilter | None:
    """The pipeline file's moth filter, if it has one."""
    if spec is None or spec.filter is None:
        return None
    model = OnnxClassifier.from_file(spec.filter.model, opts.providers, num_threads=opts.threads)
    rank = model.hierarchy.ranks[0]
    classes = model.hierarchy.classes(rank)
    if spec.filter.positive not in classes:
        raise ValueError(
            f"{spec.path}: filter.positive: {spec.filter.positive!r} is not a class of "
            f"{spec.filter.model} ({rank}: {', '.join(classes)})"
        )
    return MothFilter(model, spec.filter.positive, spec.filter.threshold)


def _summary(counts: _Counts, total: int, pipeline: Pipeline, seconds: float, output: str) -> str:
    errors = f"{counts.errors} error{'s' * (counts.errors != 1)}"
    found = f"{counts.detections} detection{'s' * (counts.detections != 1)}"
    what = "classified" if pipeline.classifier is not None else "found"
    if pipeline.moth_filter is not None:
        what = f"found, {counts.detections - counts.non_moths} moths classified"
    return (
        f"{PROG}: {counts.frames} of {total} frames searched, {errors}; {found} {what} "
        f"({counts.empty} frame{'s' * (counts.empty != 1)} with none), on "
        f"{_provider(pipeline)}, {total / max(seconds, 1e-9):.1f} frames/s; wrote {output}"
    )


def _provider(pipeline: Pipeline) -> str:
    if isinstance(pipeline.detector, WholeFrame) and pipeline.classifier is not None:
        return pipeline.classifier.provider
    return pipeline.detector.provider
