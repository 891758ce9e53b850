"""A pipeline as the server sees it: its classifier (and, from a pipeline file, its detector
and filter), its slug, and versions from the files' hashes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from moths_framework.inference import OnnxClassifier
from moths_framework.inference.pipeline_file import read_pipeline_file, slug_of
from moths_framework.inference.pipeline_models import (
    LoadedModel,
    LoadedPipeline,
    file_sha256,
    load_pipeline,
)

__all__ = [
    "ServedModel",
    "file_sha256",
    "load_served_model",
    "load_served_pipeline",
    "slug_of",
]


@dataclass(frozen=True)
class ServedModel:
    """One pipeline of the service.

    Attributes:
        slug: the pipeline's name on the wire (``/process``'s ``pipeline``, ``/v1``'s ``model``).
        classifier: the model on ONNX Runtime; its session is used by one batcher only.
        source: what the user named (a path or ``zoo:ID``), for ``/v1/models``.
        sha256: the classifier file's hash; its algorithms' versions derive from it, so
            new weights or new labels are a new version for Antenna.
        stages: the pipeline file's models (detector, filter), if it came from one.
    """

    slug: str
    classifier: OnnxClassifier
    source: str
    sha256: str
    stages: LoadedPipeline | None = None

    @property
    def detector(self) -> LoadedModel | None:
        return self.stages.detector if self.stages is not None else None

    @property
    def filter(self) -> LoadedModel | None:
        return self.stages.filter if self.stages is not None else None

    @property
    def crop_margin(self) -> int:
        detector = self.stages.spec.detector if self.stages is not None else None
        return detector.crop_margin if detector is not None else 0

    @property
    def version(self) -> int:
        """The pipeline file's ``version``, else a positive 28-bit integer from the hash of
        every stage's file (fits Antenna's integer fields)."""
        if self.stages is not None and self.stages.spec.version is not None:
            return self.stages.spec.version
        digest = self.stages.sha256 if self.stages is not None else self.sha256
        return int(digest[:7], 16) or 1

    @property
    def classifier_version(self) -> int:
        """The classifier's version, from its file's hash."""
        return int(self.sha256[:7], 16) or 1

    @property
    def version_name(self) -> str:
        """The classifier's version name, from its file's hash."""
        return f"sha256:{self.sha256[:12]}"

    @property
    def model_name(self) -> str:
        """The classifier's name (its model card's), for its algorithms."""
        card = self.classifier.metadata.model_card
        return str(card.get("name") or card.get("title") or self.slug)

    @property
    def name(self) -> str:
        """The pipeline's name: the pipeline file's, else the classifier's."""
        spec = self.stages.spec if self.stages is not None else None
        return spec.name if spec is not None and spec.name else self.model_name

    @property
    def description(self) -> str:
        """The pipeline file's description, else one saying what the pipeline does."""
        card = self.classifier.metadata.model_card
        ranks = ", ".join(self.classifier.hierarchy.ranks)
        backbone = f" on {card['backbone']}" if card.get("backbone") else ""
        if self.stages is None:
            return str(
                card.get("description") or f"Whole-image moth classifier{backbone} ({ranks})"
            )
        if self.stages.spec.description:
            return self.stages.spec.description
        parts = ["detector" if self.detector else "whole image"]
        parts += ["moth filter"] * (self.filter is not None) + [f"classifier{backbone}"]
        return f"Moth pipeline: {', then '.join(parts)} ({ranks})"


def load_served_model(
    path: str | os.PathLike,
    source: str | None = None,
    slug: str | None = None,
    providers: str = "auto",
    num_threads: int | None = None,
) -> ServedModel:
    """Open an exported model for serving.

    Args:
        path: the ``.onnx`` file.
        source: what the user named (default: ``path``); the slug derives from it.
        slug: override the pipeline slug.
        providers, num_threads: see :meth:`OnnxClassifier.from_file`.

    Raises:
        FileNotFoundError, ValueError: as :meth:`OnnxClassifier.from_file`.
    """
    source = source or os.fspath(path)
    classifier = OnnxClassifier.from_file(path, providers, num_threads=num_threads)
    return ServedModel(slug or slug_of(source), classifier, source, file_sha256(path))


def load_served_pipeline(
    path: str | os.PathLike,
    providers: str = "auto",
    num_threads: int | None = None,
    batch_size: int = 32,
) -> ServedModel:
    """Open a pipeline file's models for serving (see :mod:`~.inference.pipeline_file`).

    Raises:
        PipelineFileError, FileNotFoundError, ValueError: the file or one of its models.
    """
    stages = load_pipeline(read_pipeline_file(path), providers, num_threads, batch_size)
    main = stages.classifier
    return ServedModel(stages.spec.slug, main.model, main.source, main.sha256, stages)
