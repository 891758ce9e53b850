"""``moths-zoo add``: put an exported model (and its checkpoint) into an index folder.

Layout of an index folder::

    index.json                     the entries (schema 1)
    <id>/README.md                 the model card of the newest version
    <id>/<version>/model.onnx      the files, referenced by relative url
    <id>/<version>/model.safetensors
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import pooch

from moths_framework import __version__
from moths_framework.inference.metadata import ModelMetadata
from moths_framework.zoo.cache import write_atomically
from moths_framework.zoo.card import model_card
from moths_framework.zoo.errors import ZooError
from moths_framework.zoo.index import SCHEMA_VERSION, version_key

__all__ = ["ModelInfo", "add_model", "read_onnx_metadata"]

ModelInfo = dict[str, Any]


def read_onnx_metadata(path: Path) -> ModelMetadata:
    """The moths metadata of an exported model (ONNX Runtime reads it; no torch)."""
    import onnxruntime as ort

    if not path.is_file():
        raise ZooError(f"model file {path} not found")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for a bad file
        raise ZooError(f"{path} is not an ONNX model ONNX Runtime can load: {err}") from err
    return ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))


def _checkpoint_file(checkpoint: Path, out: Path) -> Path:
    """Copy a ``.safetensors`` zoo checkpoint, or convert a Lightning ``.ckpt`` (no pickle kept)."""
    if not checkpoint.is_file():
        raise ZooError(f"checkpoint {checkpoint} not found")
    target = out / "model.safetensors"
    if checkpoint.suffix == ".safetensors":
        from moths_framework.zoo.checkpoint import load_zoo_checkpoint

        load_zoo_checkpoint(checkpoint)  # raises when it is not one
        shutil.copyfile(checkpoint, target)
        return target
    from moths_framework.model.checkpoint import read_checkpoint
    from moths_framework.model.lightning import CHECKPOINT_KEY
    from moths_framework.zoo.checkpoint import save_zoo_checkpoint

    loaded = read_checkpoint(checkpoint)
    return save_zoo_checkpoint(loaded["state_dict"], loaded[CHECKPOINT_KEY], target)


def _file_entry(role: str, path: Path, index_dir: Path) -> dict[str, Any]:
    return {
        "role": role,
        "url": path.relative_to(index_dir).as_posix(),
        "sha256": pooch.file_hash(str(path), alg="sha256"),
        "size": path.stat().st_size,
    }


def _entry(meta: ModelMetadata, info: ModelInfo, files: list[dict[str, Any]]) -> dict[str, Any]:
    card = meta.model_card
    temperature = meta.temperature
    return {
        "id": info["id"],
        "version": info["version"],
        "title": info.get("title") or info["id"],
        "description": info.get("description") or "",
        "intended_use": info.get("intended_use") or "",
        "files": files,
        "backbone": card.get("backbone", {}),
        "ranks": meta.hierarchy.num_classes(),
        "preprocessing": json.loads(meta.preprocessing.to_json()),
        "calibration": {
            "calibrated": any(t != 1.0 for t in temperature.values()),
            "temperature": temperature,
        },
        "metrics": card.get("validation_metrics", {}),
        "training_data": card.get("training_data", {}),
        "license": info.get("license") or "",
        "citation": info.get("citation") or "",
        "region": info.get("region") or "",
        "limits": list(info.get("limits") or []),
        "framework_version": card.get("trained_with") or __version__,
        "created": info.get("created")
        or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _read_or_new_index(index_dir: Path) -> dict[str, Any]:
    path = index_dir / "index.json"
    if not path.is_file():
        return {"schema": SCHEMA_VERSION, "models": []}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA_VERSION:
        raise ZooError(f"{path} has schema {data.get('schema')!r}, not {SCHEMA_VERSION}")
    return data


def add_model(
    onnx_path: Path,
    index_dir: Path,
    info: ModelInfo,
    checkpoint: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Copy the model's files into ``index_dir``, hash them, add the entry and write the card.

    Args:
        onnx_path: a model exported by ``moths-export``.
        index_dir: the index folder (created when missing).
        info: ``id`` and ``version`` (required); ``title``, ``description``,
            ``intended_use``, ``license``, ``citation``, ``region``, ``limits``,
            ``created`` (optional).
        checkpoint: a ``.ckpt`` (converted to safetensors) or ``.safetensors`` file.
        force: replace an entry with the same id and version.

    Returns:
        the new index entry.

    Raises:
        ZooError: a file is missing or not a moths model, or the entry exists.
    """
    meta = read_onnx_metadata(onnx_path)
    index = _read_or_new_index(index_dir)
    ref = f"{info['id']}@{info['version']}"
    same = [e for e in index["models"] if (e["id"], e["version"]) == (info["id"], info["version"])]
    if same and not force:
        raise ZooError(f"{index_dir / 'index.json'} already has {ref}; pass --force to replace it")
    out = index_dir / info["id"] / info["version"]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, out / "model.onnx")
    files = [_file_entry("onnx", out / "model.onnx", index_dir)]
    if checkpoint is not None:
        files.append(_file_entry("checkpoint", _checkpoint_file(checkpoint, out), index_dir))
    entry = _entry(meta, info, files)
    models = [e for e in index["models"] if e not in same] + [entry]
    models.sort(key=lambda e: (e["id"], version_key(e["version"])))
    index["models"] = models
    text = json.dumps(index, indent=2, ensure_ascii=False) + "\n"
    write_atomically(index_dir / "index.json", text.encode("utf-8"))
    newest = max(
        (e for e in models if e["id"] == info["id"]), key=lambda e: version_key(e["version"])
    )
    if newest is entry:
        card = model_card(entry, meta.hierarchy)
        write_atomically(index_dir / info["id"] / "README.md", card.encode("utf-8"))
    return entry
