"""The model zoo's resolver: find models in an index and fetch them, checksum-verified, cached.

``zoo:ID[@VERSION]`` names a model wherever a model path is accepted
(``moths-infer --model``, ``OnnxClassifier.from_file``, ``model.init_from``);
:func:`resolve` turns it into a verified local file.

Index text is data, never code or a path: every index is checked against the
packaged JSON Schema (:func:`validate_index`), the cache names files only by
their sha256, plain http needs :func:`allowing_insecure_http`, and a zoo
checkpoint is safetensors (a ``.ckpt`` pickle could run its author's code).

Torch-free, so production boxes resolve ``zoo:`` names: imports only the
standard library, pooch, platformdirs, filelock, jsonschema and
:mod:`moths_framework.atomic_files`; never ``model/``, ``export/``, ``cli/`` or
torch. Publishing (``moths-zoo add``) is :mod:`moths_framework.export.zoo_entry`;
reading a zoo checkpoint is :func:`moths_framework.model.checkpoint.read_weights`.
"""

from __future__ import annotations

from pathlib import Path

from moths_framework.zoo.cache import cache_root, cached_path, fetch_file, verify_cache
from moths_framework.zoo.errors import (
    ZooChecksumError,
    ZooError,
    ZooInsecureError,
    ZooOfflineError,
)
from moths_framework.zoo.index import (
    CLASSIFICATION,
    DETECTION,
    ZooEntry,
    ZooFile,
    ZooIndex,
    find_entry,
    load_indexes,
    parse_ref,
)
from moths_framework.zoo.schema import validate_index
from moths_framework.zoo.transport import allowing_insecure_http, insecure_http_allowed

__all__ = [
    "CLASSIFICATION",
    "DETECTION",
    "PREFIX",
    "ZooChecksumError",
    "ZooEntry",
    "ZooError",
    "ZooFile",
    "ZooIndex",
    "ZooInsecureError",
    "ZooOfflineError",
    "allowing_insecure_http",
    "cache_root",
    "cached_path",
    "find",
    "insecure_http_allowed",
    "is_zoo_ref",
    "parse_ref",
    "pull",
    "resolve",
    "validate_index",
    "verify_cache",
]

PREFIX = "zoo:"


def is_zoo_ref(name: object) -> bool:
    """True for a string ``zoo:ID[@VERSION]``."""
    return isinstance(name, str) and name.startswith(PREFIX)


def find(ref: str, indexes: list[str] | None = None) -> ZooEntry:
    """The index entry ``ID[@VERSION]`` names (newest version when none is given).

    Args:
        ref: ``ID``, ``ID@VERSION``, with or without the ``zoo:`` prefix.
        indexes: index locations; default ``MOTHS_ZOO_INDEX`` or the checkout's.

    Raises:
        ZooError: no index, or unknown id/version (close matches are listed).
    """
    return find_entry(load_indexes(indexes, cache_root()), ref)


def pull(ref: str, indexes: list[str] | None = None, progress: bool = False) -> dict[str, Path]:
    """Fetch every file of a model into the cache; role -> verified local path."""
    entry = find(ref, indexes)
    return {f.role: fetch_file(entry, f, progress) for f in entry.files}


def resolve(
    name: str | Path,
    role: str = "onnx",
    indexes: list[str] | None = None,
    progress: bool = False,
    task: str | None = None,
) -> Path:
    """A local path for a model name: ``zoo:ID[@V]`` is fetched and verified, a path is kept.

    Args:
        name: ``zoo:ID[@VERSION]`` or a file path.
        role: which file of a zoo model: ``onnx`` or ``checkpoint``.
        task: ``classification`` or ``detection``: the zoo model must do that
            (checked before anything is fetched); ``None``: any.

    Raises:
        ZooError: the zoo reference cannot be resolved or fetched (one line), it
            names a model of another task, or its checkpoint is not ``.safetensors``.
    """
    if not is_zoo_ref(name):
        return Path(name)
    entry = find(str(name), indexes)
    if task is not None and entry.task != task:
        raise ZooError(f"zoo model {entry.ref} is a {entry.task} model, not a {task} model")
    file = entry.file(role)
    if role == "checkpoint" and not file.name.endswith(".safetensors"):
        raise ZooError(
            f"zoo model {entry.ref}: its checkpoint {file.name} is not .safetensors; a zoo "
            "checkpoint must be (a .ckpt is a pickle that can run its author's code)"
        )
    return fetch_file(entry, file, progress)
