"""A pipeline file's models opened on ONNX Runtime, each with its file's hash (the versions
AMI sees derive from it). :func:`load_pipeline` is what ``moths-serve --pipeline`` uses;
the file itself is read by :mod:`.pipeline_file`. No torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moths_framework.inference.pipeline_file import PipelineFileError, PipelineSpec

__all__ = ["LoadedModel", "LoadedPipeline", "file_sha256", "load_pipeline"]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    """One stage's model, what the user named (``source``), and its file's hash."""

    model: Any  # OnnxDetector or OnnxClassifier
    source: str
    sha256: str

    @property
    def version(self) -> int:
        """A positive 28-bit integer from the file hash (fits Antenna's integer fields)."""
        return int(self.sha256[:7], 16) or 1

    @property
    def version_name(self) -> str:
        return f"sha256:{self.sha256[:12]}"


@dataclass(frozen=True)
class LoadedPipeline:
    """A pipeline file's models on ONNX Runtime."""

    spec: PipelineSpec
    classifier: LoadedModel
    detector: LoadedModel | None = None
    filter: LoadedModel | None = None

    @property
    def sha256(self) -> str:
        """One hash of every stage's file (and the stage it is in)."""
        parts = [
            f"{role}:{stage.sha256}"
            for role, stage in (("detector", self.detector), ("filter", self.filter),
                                ("classifier", self.classifier))
            if stage is not None
        ]  # fmt: skip
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def filter_index(self) -> int:
        """The index of the filter's ``positive`` class on its first rank."""
        spec = self.spec.filter
        return self.filter.model.hierarchy.classes(self.filter.model.hierarchy.ranks[0]).index(
            spec.positive
        )


def load_pipeline(
    spec: PipelineSpec,
    providers: str | Sequence[str] = "auto",
    num_threads: int | None = None,
    batch_size: int = 32,
) -> LoadedPipeline:
    """Open a pipeline's models.

    Raises:
        FileNotFoundError, ValueError (ModelFormatError, ZooError): a model that
            cannot be opened, named with its stage; PipelineFileError: a filter
            without its ``positive`` class, thresholds of unknown ranks.
    """
    from moths_framework import zoo
    from moths_framework.inference.classifier import OnnxClassifier
    from moths_framework.inference.detector import OnnxDetector
    from moths_framework.inference.providers import EngineSettings

    def local(source: str, task: str) -> str:
        return os.fspath(zoo.resolve(source, task=task))

    def classifier(source: str, thresholds: dict[str, float]) -> LoadedModel:
        path = local(source, zoo.CLASSIFICATION)
        model = OnnxClassifier.from_file(
            path, providers, thresholds=thresholds, num_threads=num_threads,
            engine=EngineSettings(batch_size),
        )  # fmt: skip
        return LoadedModel(model, source, file_sha256(path))

    with _stage_named(spec, "classifier"):
        main = classifier(spec.classifier.model, spec.classifier.thresholds)
    detector = filter_ = None
    if spec.detector is not None:
        with _stage_named(spec, "detector"):
            path = local(spec.detector.model, zoo.DETECTION)
            model = OnnxDetector.from_file(
                path, providers, min_score=spec.detector.min_score,
                max_detections=spec.detector.max_detections, num_threads=num_threads,
            )  # fmt: skip
            detector = LoadedModel(model, spec.detector.model, file_sha256(path))
    if spec.filter is not None:
        with _stage_named(spec, "filter"):
            filter_ = classifier(spec.filter.model, {})
            rank = filter_.model.hierarchy.ranks[0]
            classes = filter_.model.hierarchy.classes(rank)
            if spec.filter.positive not in classes:
                raise PipelineFileError(
                    f"filter.positive: {spec.filter.positive!r} is not a class of "
                    f"{spec.filter.model} ({rank}: {', '.join(classes)})"
                )
    return LoadedPipeline(spec, main, detector, filter_)


class _stage_named:  # noqa: N801 (used as a context manager, like contextlib's)
    """Prefix a stage's load error with the pipeline file and the stage."""

    def __init__(self, spec: PipelineSpec, stage: str) -> None:
        self.path = spec.path
        self.prefix = f"{spec.path}: {stage}"

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> bool:
        if isinstance(error, PipelineFileError):  # names its field already
            raise PipelineFileError(f"{self.path}: {error}") from None
        if isinstance(error, FileNotFoundError):
            raise FileNotFoundError(f"{self.prefix}: {error}") from None
        if isinstance(error, ValueError):
            raise PipelineFileError(f"{self.prefix}: {error}") from None
        return False
