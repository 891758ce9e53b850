"""Checkpoint files: read and write them, safely; one entry point, :func:`read_weights`.

Two file kinds carry a trained model's weights and its :class:`CheckpointMeta`:

- a Lightning ``.ckpt`` (``moths-fit``, ``moths-calibrate``): a pickle, the
  metadata under :data:`CHECKPOINT_KEY`. It is read with
  ``torch.load(weights_only=True)`` unless checkpoints are trusted
  (:mod:`moths_framework.model.trust`), so a pickled object that would run code
  is refused in one line naming ``--trust-checkpoint``;
- a ``.safetensors`` zoo checkpoint (``moths-zoo add``): the tensors in
  safetensors, the metadata as JSON in its header, so reading it runs nothing.

``read_weights`` reads either, or ``zoo:ID[@VERSION]`` (fetched and verified).
Rebuilding the model from them is :mod:`moths_framework.model.rebuild`; this
module never imports the LightningModule (it imports this one).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from moths_framework import zoo
from moths_framework.atomic_files import replaced_atomically
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.checkpoint_meta import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_KEY,
    CheckpointError,
    CheckpointMeta,
)
from moths_framework.model.trust import TRUST_HINT, checkpoints_trusted

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEY",
    "SAFETENSORS_KEY",
    "CheckpointError",
    "CheckpointMeta",
    "StateDict",
    "checkpoint_hierarchy",
    "checkpoint_meta",
    "load_safetensors",
    "read_checkpoint",
    "read_safetensors",
    "read_weights",
    "save_safetensors",
    "write_safetensors",
]

SAFETENSORS_KEY = "moths.checkpoint"  # the safetensors header key of the metadata JSON
StateDict = dict[str, torch.Tensor]


def read_weights(source: str | Path) -> tuple[StateDict, CheckpointMeta]:
    """The weights and metadata of a ``.ckpt``, a ``.safetensors`` zoo checkpoint or
    ``zoo:ID[@VERSION]`` (its checkpoint file, fetched and verified).

    A ``.ckpt`` follows the trust rules of :func:`read_checkpoint`; a
    ``.safetensors`` file runs no code whoever made it.

    Raises:
        CheckpointError: the file is missing, unreadable or not a moths checkpoint.
        ZooError: a ``zoo:`` reference cannot be resolved or fetched, or its
            checkpoint is not ``.safetensors``.
    """
    path = zoo.resolve(source, role="checkpoint")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    checkpoint = read_checkpoint(path)
    return checkpoint["state_dict"], checkpoint_meta(checkpoint, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The whole Lightning checkpoint dictionary; checks it carries the moths metadata.

    Read with ``torch.load(weights_only=True)`` unless checkpoints are trusted
    (:mod:`moths_framework.model.trust`): a pickled object that would run code
    is refused, in one line naming ``--trust-checkpoint``.
    """
    path = _existing(path)
    trusted = checkpoints_trusted()
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch raises many kinds for a bad file
        if not trusted and "Weights only load failed" in str(err):
            raise CheckpointError(
                f"{path} holds pickled objects beyond tensors and plain data ({_refused(err)}); "
                f"loading it could run its author's code: {TRUST_HINT}"
            ) from err
        raise CheckpointError(f"{path} is not a readable checkpoint: {_first_line(err)}") from err
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise CheckpointError(f"{path} was not written by moths-fit (no '{CHECKPOINT_KEY}' entry)")
    return checkpoint


def checkpoint_meta(checkpoint: dict[str, Any], source: object = "checkpoint") -> CheckpointMeta:
    """The :class:`CheckpointMeta` of a checkpoint read by :func:`read_checkpoint`.

    Raises:
        CheckpointError: the metadata is missing or unreadable (``source`` named).
    """
    return CheckpointMeta.from_dict(checkpoint.get(CHECKPOINT_KEY), source)


def checkpoint_hierarchy(checkpoint: dict[str, Any]) -> LabelHierarchy:
    """The label hierarchy a checkpoint's heads were trained on (its class order)."""
    return checkpoint_meta(checkpoint).hierarchy


def write_safetensors(state_dict: StateDict, meta: CheckpointMeta, path: str | Path) -> Path:
    """Write ``state_dict`` and ``meta`` as one safetensors file (a zoo checkpoint), atomically.

    The validation image paths the metadata may list are dropped (they name
    someone's disk).
    """
    return save_safetensors(state_dict, replace(meta, data=meta.training_data).to_dict(), path)


def save_safetensors(state_dict: StateDict, stored: dict[str, Any], path: str | Path) -> Path:
    """Write tensors and a metadata dictionary (JSON under :data:`SAFETENSORS_KEY`), atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    # One header key: safetensors writes its metadata map in no fixed order, so a second
    # key would make rebuilds of the same model differ byte for byte (and by sha256).
    header = {SAFETENSORS_KEY: json.dumps(stored, sort_keys=True)}
    path = Path(path)
    with replaced_atomically(path) as temporary:
        save_file(tensors, str(temporary), metadata=header)
    return path


def read_safetensors(path: str | Path) -> tuple[StateDict, CheckpointMeta]:
    """The tensors and metadata of a zoo checkpoint; runs no code from the file.

    Raises:
        CheckpointError: missing, not a safetensors file, or one without moths metadata.
    """
    tensors, stored = load_safetensors(path)
    return tensors, CheckpointMeta.from_dict(stored, path)


def load_safetensors(path: str | Path) -> tuple[StateDict, dict[str, Any]]:
    """The tensors and the metadata dictionary :func:`save_safetensors` wrote.

    Raises:
        CheckpointError: missing, not a safetensors file, or one without moths metadata.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a safetensors checkpoint: {err}") from err
    if SAFETENSORS_KEY not in header:
        raise CheckpointError(
            f"{path} has no {SAFETENSORS_KEY} metadata: it was not written by moths-zoo"
        )
    try:
        stored = json.loads(header[SAFETENSORS_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its {SAFETENSORS_KEY} metadata is not JSON: {err}") from err
    return tensors, stored


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    return path


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _refused(err: BaseException) -> str:
    """What torch's weights-only unpickler refused, from its long message."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if found:
        return f"it names {found.group(1)}"
    detail = re.search(r"WeightsUnpickler error: ([^\n]+)", str(err))
    return detail.group(1).strip() if detail else "not a plain checkpoint"
