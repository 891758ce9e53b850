"""Zoo checkpoints without pickle: one safetensors file, the moths metadata in its header.

A Lightning ``.ckpt`` is a pickle: loading one from a stranger can run their
code. A zoo checkpoint holds the model's tensors in safetensors and the
``moths`` metadata (hierarchy, preprocessing, backbone spec, metrics, data
summary) as JSON in the safetensors header, so reading it executes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moths_framework.atomic_files import replaced_atomically
from moths_framework.zoo.errors import ZooError

if TYPE_CHECKING:
    import torch

__all__ = ["METADATA_KEY", "load_zoo_checkpoint", "save_zoo_checkpoint"]

METADATA_KEY = "moths.checkpoint"


def save_zoo_checkpoint(
    state_dict: dict[str, torch.Tensor], meta: dict[str, Any], path: str | Path
) -> Path:
    """Write ``state_dict`` and the ``moths`` metadata ``meta`` as one safetensors file.

    ``meta`` is what ``moths-fit`` stores under the checkpoint's ``moths`` key;
    the validation image paths it may list are dropped (they name someone's disk).
    """
    from safetensors.torch import save_file

    meta = {k: v for k, v in meta.items()}
    if isinstance(meta.get("data"), dict):
        meta["data"] = {k: v for k, v in meta["data"].items() if k != "val_examples"}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    # One header key: safetensors writes its metadata map in no fixed order, so a second
    # key would make rebuilds of the same model differ byte for byte (and by sha256).
    header = {METADATA_KEY: json.dumps(meta, sort_keys=True)}
    path = Path(path)
    with replaced_atomically(path) as temporary:
        save_file(tensors, str(temporary), metadata=header)
    return path


def load_zoo_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and the ``moths`` metadata of a zoo checkpoint; runs no code from the file.

    Raises:
        ZooError: not a safetensors file, or one without moths metadata.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ZooError(f"{path} is not a safetensors checkpoint: {err}") from err
    if METADATA_KEY not in header:
        raise ZooError(f"{path} has no {METADATA_KEY} metadata: it was not written by moths-zoo")
    return tensors, json.loads(header[METADATA_KEY])
