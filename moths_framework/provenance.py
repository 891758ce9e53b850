"""Provenance: a ``run.json`` beside every output, saying how that output was made.

``detections.csv`` gets ``detections.csv.run.json``; an output folder gets ``run.json``
inside it. The record names the command line, the start and end time (UTC), a run id
(a UUID: two runs are always told apart, even when everything else matches), the
software's versions, every model (file, sha256, size, zoo id and version when it came
from the zoo), the settings that change the answer (thresholds, roll-up, species list,
mask mode, ...), and each input file with its sha256 and, when it has one, its own
``run.json``: a ``occurrences.csv.run.json`` carries the whole chain back to the models
that made the detections (:func:`models_in`).

The fields are described in docs/reference/provenance.md. No torch; the zoo is
imported only to name a ``zoo:`` model's id and version.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from moths_framework.atomic_files import write_text_atomically
from moths_framework.output_folders import record_written

__all__ = [
    "FOLDER_SIDECAR",
    "SCHEMA",
    "SIDECAR_SUFFIX",
    "Run",
    "file_sha256",
    "model_record",
    "models_in",
    "read_provenance",
    "runs_in",
    "sidecar_path",
    "software_versions",
    "utc_now",
    "write_provenance",
]

SCHEMA = "moths-framework/run/1"
SIDECAR_SUFFIX = ".run.json"
FOLDER_SIDECAR = "run.json"
# Installed distributions whose versions change an answer or its files, when present.
KEY_LIBRARIES = (
    "numpy", "pillow", "onnxruntime", "onnxruntime-gpu", "scipy", "exifread", "tqdm",
)  # fmt: skip


def sidecar_path(output: str | os.PathLike) -> Path:
    """Where ``output``'s record goes: ``<output>.run.json``, or ``run.json`` inside a folder."""
    output = Path(output)
    if output.is_dir():
        return output / FOLDER_SIDECAR
    return output.with_name(output.name + SIDECAR_SUFFIX)


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the millisecond: ``2026-07-01T23:15:02.123Z``."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    return now.replace("+00:00", "Z")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """moths-framework's version, Python's, the platform's and the key libraries' installed."""
    versions = {
        "moths-framework": _version("moths-framework") or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in KEY_LIBRARIES:
        found = _version(name)
        if found:
            versions[name] = found
    return versions


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def model_record(
    role: str,
    path: str | os.PathLike,
    *,
    given: str | None = None,
    card: Mapping[str, Any] | None = None,
    **facts: Any,
) -> dict[str, Any]:
    """What identifies a model: its role, the name it was given by, its file, sha256 and
    size, the zoo id and version (``given`` a ``zoo:`` name), its model card's export facts,
    and any ``facts`` (e.g. ``precision``)."""
    path = Path(path)
    record: dict[str, Any] = {
        "role": role,
        "given": given if given is not None else os.fspath(path),
        "file": os.fspath(path.absolute()),
        "sha256": file_sha256(path),
        "size": path.stat().st_size,
    }
    record |= _zoo_facts(given)
    card = card or {}
    backbone = _backbone_name(card.get("backbone"))
    record["name"] = record.get("zoo_id") or backbone or path.stem
    record["version"] = record.get("zoo_version") or card.get("exported_at")
    for key in ("exported_at", "exported_with", "trained_with"):
        if key in card:
            record[key] = card[key]
    if backbone:
        record["backbone"] = backbone
    return record | facts


def _backbone_name(backbone: Any) -> str | None:
    """A model card's backbone name: a string, or a class spec's ``init_args.name``."""
    if isinstance(backbone, str):
        return backbone
    init_args = backbone.get("init_args") if isinstance(backbone, Mapping) else None
    name = init_args.get("name") if isinstance(init_args, Mapping) else None
    return name if isinstance(name, str) else None


def _zoo_facts(given: str | None) -> dict[str, Any]:
    from moths_framework import zoo  # only for zoo: names (needs the infer extra)

    if not zoo.is_zoo_ref(given):
        return {}
    try:
        entry = zoo.find(str(given))
    except zoo.ZooError:  # the index went away since the model was fetched: say what is known
        name, _, version = str(given).removeprefix(zoo.PREFIX).partition("@")
        return {"zoo_id": name, "zoo_version": version or None}
    return {"zoo_id": entry.id, "zoo_version": entry.version, "zoo_title": entry.data.get("title")}


@dataclass
class Run:
    """One run of a command, from its start; :meth:`write` records it beside an output.

    Args:
        command: the console script (``moths-count``).
        argv: its arguments (``main(args)``'s list); default ``sys.argv[1:]``.
    """

    command: str
    argv: Sequence[str] | None = None
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: str = field(default_factory=utc_now)
    models: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.argv = list(sys.argv[1:] if self.argv is None else self.argv)

    def add_model(self, role: str, path: str | os.PathLike, **kwargs: Any) -> None:
        """Record a model (see :func:`model_record` for the arguments)."""
        self.models.append(model_record(role, path, **kwargs))

    def add_input(self, path: str | os.PathLike) -> None:
        """Record an input file: its path, sha256, and its own ``run.json`` when it has one."""
        self.inputs.append(
            {
                "path": os.fspath(path),
                "sha256": file_sha256(path),
                "run": read_provenance(path),
            }
        )

    def record(self, output: str | os.PathLike) -> dict[str, Any]:
        """The JSON record of this run for ``output``, ended now."""
        output = Path(output)
        written: dict[str, Any] = {"path": os.fspath(output)}
        if output.is_file():
            written |= {"sha256": file_sha256(output), "size": output.stat().st_size}
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "command": self.command,
            "argv": list(self.argv or []),
            "command_line": shlex.join([self.command, *(self.argv or [])]),
            "working_directory": os.getcwd(),
            "started": self.started,
            "finished": utc_now(),
            "output": written,
            "software": software_versions(),
            "models": self.models,
            "settings": self.settings,
            "inputs": self.inputs,
        }

    def write(self, output: str | os.PathLike, *, record_as_written: bool = True) -> Path:
        """Write the record beside ``output`` (a file or folder, already written); for a
        file, record the sidecar as written by the command (see :mod:`.output_folders`).
        Returns the sidecar's path."""
        sidecar = sidecar_path(output)
        text = json.dumps(self.record(output), indent=1, ensure_ascii=False, default=str)
        write_text_atomically(sidecar, text + "\n")
        if record_as_written and sidecar.parent != Path(output):
            record_written(sidecar.parent, [sidecar.name], self.command)
        return sidecar


def write_provenance(
    output: str | os.PathLike,
    command: str,
    *,
    argv: Sequence[str] | None = None,
    started: str | None = None,
    models: Iterable[Mapping[str, Any]] = (),
    settings: Mapping[str, Any] | None = None,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """One call: record a run of ``command`` beside ``output``; the sidecar's path.

    ``models`` are :func:`model_record` dicts; ``inputs`` are files (hashed, with their
    own records); ``started`` defaults to now.
    """
    run = Run(command, argv, **({"started": started} if started else {}))
    run.models += [dict(model) for model in models]
    run.settings |= dict(settings or {})
    for path in inputs:
        run.add_input(path)
    return run.write(output)


def read_provenance(output: str | os.PathLike) -> dict[str, Any] | None:
    """``output``'s record, or ``None`` when it has none (or it cannot be read as one)."""
    try:
        record = json.loads(sidecar_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == SCHEMA else None


def runs_in(record: Mapping[str, Any] | None) -> Iterator[Mapping[str, Any]]:
    """A record and, depth first, the records of its inputs (the chain behind an output)."""
    if not record:
        return
    yield record
    for item in record.get("inputs") or []:
        if isinstance(item, Mapping):
            yield from runs_in(item.get("run"))


def models_in(record: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every model behind an output, through its inputs' records, each sha256 once."""
    found: dict[str, dict[str, Any]] = {}
    for run in runs_in(record):
        for model in run.get("models") or []:
            if isinstance(model, Mapping):
                found.setdefault(str(model.get("sha256")), dict(model))
    return list(found.values())
