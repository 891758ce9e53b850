"""Opening an exported model file and checking that it is a moths model.

What :meth:`OnnxClassifier.from_file` needs before it can classify: the file
(``zoo:`` names fetched and verified), an ONNX Runtime session on it, its moths
metadata, an input and outputs that match that metadata, and the novelty
detector it carries, if any. A file that falls short fails here, with a message
that names the cause.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from moths_framework import zoo
from moths_framework.inference.metadata import (
    FEATURES_OUTPUT,
    INPUT_NAME,
    ModelFormatError,
    ModelMetadata,
)
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.providers import EngineSettings, open_session, resolve_providers

if TYPE_CHECKING:
    from collections.abc import Sequence

    import onnxruntime as ort

__all__ = ["checked_metadata", "novelty_detector", "open_model_file"]

log = logging.getLogger(__name__)


def open_model_file(
    path: str | os.PathLike,
    providers: str | Sequence[str] = "auto",
    num_threads: int | None = None,
    engine: EngineSettings | None = None,
    task: str = zoo.CLASSIFICATION,
) -> tuple[ort.InferenceSession, str]:
    """An ONNX Runtime session on ``path`` (a file, or ``zoo:ID[@VERSION]``), and the file's path.

    ``task`` (``classification`` or ``detection``): what a ``zoo:`` model must be.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown/unavailable provider, or a file ONNX Runtime cannot load.
        ZooError: a ``zoo:`` name that cannot be resolved, or names a model of
            another task (a ValueError too).
    """
    path = zoo.resolve(path, task=task)  # zoo:ID[@VERSION] -> the verified cached file
    if not Path(path).is_file():
        raise FileNotFoundError(f"model file {os.fspath(path)} not found")
    session = open_session(path, resolve_providers(providers), num_threads, engine)
    return session, os.fspath(path)


def checked_metadata(session: ort.InferenceSession, source: str) -> ModelMetadata:
    """The model's moths metadata, once its input and outputs are checked against it.

    Raises:
        ModelFormatError: no moths metadata, or an input/output that does not match it.
    """
    props = session.get_modelmeta().custom_metadata_map
    metadata = ModelMetadata.from_props(props, source)
    _check_signature(session, metadata, source)
    return metadata


def novelty_detector(
    session: ort.InferenceSession, metadata: ModelMetadata, source: str
) -> NoveltyDetector | None:
    """The model's novelty detector; ``None`` when it has none or lacks the features output.

    Raises:
        ModelFormatError: the novelty statistics cannot be read.
    """
    if metadata.novelty is None:
        return None
    if FEATURES_OUTPUT not in {o.name for o in session.get_outputs()}:
        log.warning(
            "%s has novelty statistics but no %r output (exported with --no-features): "
            "no novelty scores",
            source,
            FEATURES_OUTPUT,
        )
        return None
    try:
        return NoveltyDetector.from_json(metadata.novelty)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFormatError(f"{source}: unreadable novelty statistics: {error}") from error


def _check_signature(session: ort.InferenceSession, metadata: ModelMetadata, source: str) -> None:
    """Check the model's input and outputs against its metadata, so errors name the cause."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if INPUT_NAME not in inputs:
        raise ModelFormatError(
            f"{source} has no input {INPUT_NAME!r} (inputs: {', '.join(inputs)})"
        )
    height, width = metadata.preprocessing.input_size
    shape = inputs[INPUT_NAME]
    expected = [None, 3, height, width]  # None: the batch axis, any size
    if len(shape) != 4 or any(
        isinstance(dim, int) and want is not None and dim != want
        for dim, want in zip(shape, expected, strict=True)
    ):
        raise ModelFormatError(
            f"{source}: input {INPUT_NAME!r} has shape {shape}, the metadata says "
            f"[N, 3, {height}, {width}]"
        )
    outputs = {o.name: o.shape for o in session.get_outputs()}
    for rank, count in metadata.hierarchy.num_classes().items():
        if rank not in outputs:
            raise ModelFormatError(
                f"{source} has no output {rank!r} (outputs: {', '.join(outputs)})"
            )
        dims = outputs[rank]
        if len(dims) != 2 or (isinstance(dims[1], int) and dims[1] != count):
            raise ModelFormatError(
                f"{source}: output {rank!r} has shape {dims}, "
                f"the hierarchy has {count} {rank} classes"
            )
