"""A model as the server sees it: its classifier, pipeline slug, and a version from its hash."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from moths_framework.inference import OnnxClassifier

__all__ = ["ServedModel", "file_sha256", "load_served_model", "slug_of"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ServedModel:
    """One pipeline of the service.

    Attributes:
        slug: the pipeline's name on the wire (``/process``'s ``pipeline``, ``/v1``'s ``model``).
        classifier: the model on ONNX Runtime; its session is used by one batcher only.
        source: what the user named (a path or ``zoo:ID``), for ``/v1/models``.
        sha256: the model file's hash; every version on the wire derives from it, so
            new weights or new labels are a new version for Antenna.
    """

    slug: str
    classifier: OnnxClassifier
    source: str
    sha256: str

    @property
    def version(self) -> int:
        """A positive 28-bit integer from the file hash (fits Antenna's integer fields)."""
        return int(self.sha256[:7], 16) or 1

    @property
    def version_name(self) -> str:
        return f"sha256:{self.sha256[:12]}"

    @property
    def name(self) -> str:
        card = self.classifier.metadata.model_card
        return str(card.get("name") or card.get("title") or self.slug)

    @property
    def description(self) -> str:
        card = self.classifier.metadata.model_card
        ranks = ", ".join(self.classifier.hierarchy.ranks)
        backbone = f" on {card['backbone']}" if card.get("backbone") else ""
        return str(card.get("description") or f"Whole-image moth classifier{backbone} ({ranks})")


def slug_of(source: str) -> str:
    """A pipeline slug from a model path or ``zoo:ID[@VERSION]``: lowercase, ``[a-z0-9-]``.

    A zoo model's version is left out: the pipeline keeps its slug across versions,
    and its ``version`` (from the file hash) tells Antenna that it changed.
    """
    name = source[4:].split("@")[0] if source.startswith("zoo:") else Path(source).stem
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "model"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
