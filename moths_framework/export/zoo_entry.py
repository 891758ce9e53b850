"""``moths-zoo add``: put an exported model (and its checkpoint) into an index folder.

The publishing side of the zoo: it reads the exported file (ONNX Runtime) and,
when a checkpoint is given, converts it to a safetensors zoo checkpoint (torch,
imported only then). The zoo package itself only finds and fetches.

Layout of an index folder::

    index.json                     the entries (schema 1)
    <id>/README.md                 the model card of the newest version
    <id>/<version>/model.onnx      the files, referenced by relative url
    <id>/<version>/model.safetensors
    .index.json.lock               taken by every add around reading and writing index.json
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pooch
from filelock import FileLock, Timeout

from moths_framework import __version__
from moths_framework.atomic_files import replaced_atomically, write_bytes_atomically
from moths_framework.export.model_card import detector_card, model_card
from moths_framework.inference.detector_metadata import DETECTION, DetectorMetadata
from moths_framework.inference.metadata import TASK_KEY, ModelMetadata
from moths_framework.zoo.errors import ZooError
from moths_framework.zoo.index import SCHEMA_VERSION, version_key
from moths_framework.zoo.schema import check_name, validate_index

__all__ = ["ModelInfo", "add_model", "read_onnx_metadata"]

ModelInfo = dict[str, Any]
_LOCK_TIMEOUT_S = 600
# RFC 3339 date-time, the index schema's "format": "date-time"
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)


def read_onnx_metadata(path: Path) -> ModelMetadata | DetectorMetadata:
    """The moths metadata of an exported classifier or detector (ONNX Runtime reads it;
    no torch)."""
    import onnxruntime as ort

    if not path.is_file():
        raise ZooError(f"model file {path} not found")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for a bad file
        raise ZooError(f"{path} is not an ONNX model ONNX Runtime can load: {err}") from err
    props = session.get_modelmeta().custom_metadata_map
    if props.get(TASK_KEY) == DETECTION:
        return DetectorMetadata.from_props(props, str(path))
    return ModelMetadata.from_props(props, str(path))


def _checkpoint_file(checkpoint: Path, staged: Path, detector: bool) -> None:
    """Write ``staged``: a ``.safetensors`` zoo checkpoint copied, or a Lightning ``.ckpt``
    converted (no pickle kept; reading the ``.ckpt`` follows ``--trust-checkpoint``)."""
    if not checkpoint.is_file():
        raise ZooError(f"checkpoint {checkpoint} not found")
    # torch only now: moths-zoo add without --checkpoint needs none
    if detector:
        from moths_framework.model.detector_checkpoint import copy_as_safetensors

        copy_as_safetensors(checkpoint, staged)  # raises when it is not a detector's
        return
    from moths_framework.model.checkpoint import read_weights, write_safetensors

    state_dict, meta = read_weights(checkpoint)  # raises when it is not a moths checkpoint
    if checkpoint.suffix == ".safetensors":
        with replaced_atomically(staged) as temporary:
            shutil.copyfile(checkpoint, temporary)
        return
    write_safetensors(state_dict, meta, staged)


def _file_entry(role: str, path: Path, index_dir: Path) -> dict[str, Any]:
    return {
        "role": role,
        "url": path.relative_to(index_dir).as_posix(),
        "sha256": pooch.file_hash(str(path), alg="sha256"),
        "size": path.stat().st_size,
    }


def _entry(
    meta: ModelMetadata | DetectorMetadata, info: ModelInfo, files: list[dict[str, Any]]
) -> dict[str, Any]:
    card = meta.model_card
    if isinstance(meta, DetectorMetadata):
        what: dict[str, Any] = {
            "task": DETECTION,
            "detector": card.get("detector", {}),
            "classes": list(meta.classes),
            "preprocessing": json.loads(meta.preprocessing.to_json()),
        }
    else:
        temperature = meta.temperature
        what = {
            "backbone": card.get("backbone", {}),
            "ranks": meta.hierarchy.num_classes(),
            "preprocessing": json.loads(meta.preprocessing.to_json()),
            "calibration": {
                "calibrated": any(t != 1.0 for t in temperature.values()),
                "temperature": temperature,
            },
        }
    metrics = card.get("validation_metrics", {})
    return {
        "id": info["id"],
        "version": info["version"],
        "title": info.get("title") or info["id"],
        "description": info.get("description") or "",
        "intended_use": info.get("intended_use") or "",
        "files": files,
        **what,
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "training_data": card.get("training_data", {}),
        "license": info.get("license") or "",
        "citation": info.get("citation") or "",
        "region": info.get("region") or "",
        "limits": list(info.get("limits") or []),
        "framework_version": card.get("trained_with") or __version__,
        "created": info.get("created")
        or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _check_created(created: str | None) -> None:
    """Raise :class:`ZooError` unless ``created`` is ``None`` or an RFC 3339 date-time.

    The schema's ``format`` is not enforced when an index is read, so ``add`` checks it.
    """
    if created is None:
        return
    try:
        if not _DATE_TIME.fullmatch(created):
            raise ValueError(created)
        datetime.datetime.strptime(created[:19].upper(), "%Y-%m-%dT%H:%M:%S")  # no 31 February
    except ValueError:
        raise ZooError(
            f"created {created!r} is not a date-time with a time zone (RFC 3339), "
            "e.g. 2026-01-01T00:00:00+00:00"
        ) from None


def _read_or_new_index(index_dir: Path) -> dict[str, Any]:
    path = index_dir / "index.json"
    if not path.is_file():
        return {"schema": SCHEMA_VERSION, "models": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ZooError(f"zoo index {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        found = data.get("schema") if isinstance(data, dict) else None
        raise ZooError(f"{path} has schema {found!r}, not {SCHEMA_VERSION}")
    validate_index(data, str(path))
    return data


@contextmanager
def _index_lock(index_dir: Path) -> Iterator[None]:
    """The lock every ``moths-zoo add`` to ``index_dir`` takes around reading and writing it."""
    lock = index_dir / ".index.json.lock"
    try:
        with FileLock(str(lock), timeout=_LOCK_TIMEOUT_S):
            yield
    except Timeout as err:
        raise ZooError(
            f"another moths-zoo add has held {lock} for {_LOCK_TIMEOUT_S} s; try again once "
            "it is done"
        ) from err


def _staging(out: Path, name: str, written: list[Path]) -> Path:
    """A new, unused path in ``out`` to write ``name``'s content to before it is placed."""
    staged = out / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.staged"
    written.append(staged)
    return staged


def _place(staged: Path, name: str, written: list[Path]) -> Path:
    """Move ``staged`` to ``name`` beside it, or to ``<stem>.<sha256[:12]><suffix>`` when
    ``name`` holds other content: a file an entry may use is never overwritten."""
    sha256 = pooch.file_hash(str(staged), alg="sha256")
    plain = staged.with_name(name)
    for target in (plain, plain.with_name(f"{plain.stem}.{sha256[:12]}{plain.suffix}")):
        if not target.exists():
            os.replace(staged, target)
            written.append(target)
            return target
        if pooch.file_hash(str(target), alg="sha256") == sha256:
            staged.unlink()
            return target  # the same bytes are there already
    raise ZooError(f"{plain.parent} has {plain.name} and {target.name}, both with other content")


def _write_files(
    onnx_path: Path,
    checkpoint: Path | None,
    detector: bool,
    out: Path,
    index_dir: Path,
    written: list[Path],
) -> list[dict[str, Any]]:
    """The entry's files written in ``out``, new ones beside (never over) what is there;
    returns their index ``files``."""
    staged = _staging(out, "model.onnx", written)
    with replaced_atomically(staged) as temporary:
        shutil.copyfile(onnx_path, temporary)
    files = [_file_entry("onnx", _place(staged, "model.onnx", written), index_dir)]
    if checkpoint is not None:
        staged = _staging(out, "model.safetensors", written)
        _checkpoint_file(checkpoint, staged, detector)
        placed = _place(staged, "model.safetensors", written)
        files.append(_file_entry("checkpoint", placed, index_dir))
    return files


def _with_entry(index: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Put ``entry`` in ``index`` in place of one with its id and version; True when it is
    the newest version of its id (then the model card is its)."""
    key = (entry["id"], entry["version"])
    models = [e for e in index["models"] if (e["id"], e["version"]) != key] + [entry]
    index["models"] = sorted(models, key=lambda e: (e["id"], version_key(e["version"])))
    same_id = [e for e in models if e["id"] == entry["id"]]
    return max(same_id, key=lambda e: version_key(e["version"])) is entry


def add_model(
    onnx_path: Path,
    index_dir: Path,
    info: ModelInfo,
    checkpoint: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Copy the model's files into ``index_dir``, hash them, add the entry and write the card.

    Safe to run concurrently on one index folder: reading, changing and writing
    ``index.json`` happens under a file lock. The new files are written first,
    beside the old ones (with ``force``, a file whose name is taken by other
    content is named ``model.<sha256[:12]>.onnx``), then ``index.json`` is
    replaced atomically: a failure on the way leaves the old entry and its files
    as they were and removes what this call wrote. Files are never deleted,
    so a replaced entry's old files stay until someone removes them.

    Args:
        onnx_path: a classifier or a detector exported by ``moths-export`` (a
            detector's entry has ``task: detection`` and its ``classes``).
        index_dir: the index folder (created when missing).
        info: ``id`` and ``version`` (required); ``title``, ``description``,
            ``intended_use``, ``license``, ``citation``, ``region``, ``limits``,
            ``created`` (optional).
        checkpoint: a ``.ckpt`` (converted to safetensors) or ``.safetensors`` file.
        force: replace an entry with the same id and version.

    Returns:
        the new index entry.

    Raises:
        ZooError: a file is missing or not a moths model, the id or version is
            not a plain name, ``created`` is not a date-time, the index is invalid,
            or the entry exists.
    """
    check_name("id", info["id"])
    check_name("version", info["version"])
    _check_created(info.get("created"))
    meta = read_onnx_metadata(onnx_path)
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / "index.json"
    with _index_lock(index_dir):
        index = _read_or_new_index(index_dir)
        ref = f"{info['id']}@{info['version']}"
        if not force and any(f"{e['id']}@{e['version']}" == ref for e in index["models"]):
            raise ZooError(f"{path} already has {ref}; pass --force to replace it")
        out = index_dir / info["id"] / info["version"]
        new_folders = [d for d in (out.parent, out) if not d.exists()]
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            detector = isinstance(meta, DetectorMetadata)
            files = _write_files(onnx_path, checkpoint, detector, out, index_dir, written)
            entry = _entry(meta, info, files)
            newest = _with_entry(index, entry)
            validate_index(index, str(path))
            card = None
            if newest:
                card = detector_card(entry) if detector else model_card(entry, meta.hierarchy)
            text = json.dumps(index, indent=2, ensure_ascii=False) + "\n"
            write_bytes_atomically(path, text.encode("utf-8"))
        except BaseException:
            for stale in written:
                stale.unlink(missing_ok=True)
            for folder in reversed(new_folders):
                folder.rmdir()
            raise
    if card is not None:
        write_bytes_atomically(index_dir / info["id"] / "README.md", card.encode("utf-8"))
    return entry
