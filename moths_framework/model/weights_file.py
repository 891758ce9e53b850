"""Local pretrained-weights files for backbone plugins: read them safely, fit them to a model.

A weights file (``pretrained_file:``) is a model's state dict: a ``.safetensors``
file, or a ``torch.save`` pickle (``.pth``, ``.pt``, ``.bin``) read with
``torch.load(weights_only=True)``, so a file that would build any object other
than tensors and plain containers is refused, never run.

Weights published by another project often use other names for the same
tensors (``_blocks.0._bn1.weight`` for timm's ``blocks.0.0.bn1.weight``).
:func:`match_state_dict` then pairs them by order, and only when the counts and
every shape agree one to one; the classifier's tensors are dropped after the
pairing (the framework's heads are its own). A pickle keeps the order its
state dict had; a ``.safetensors`` file does not (it stores tensors sorted by
type and name), so one under other names is refused rather than guessed at.
:func:`read_weights_file` reads a file and pairs it, knowing which it is.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping, Set
from pathlib import Path

import torch

from moths_framework.messages import first_few, one_line
from moths_framework.model.backbone import BackboneError

__all__ = ["match_state_dict", "read_state_dict", "read_weights_file"]

log = logging.getLogger(__name__)

# Where training scripts nest the state dict in a checkpoint they save.
_NESTED = ("state_dict", "model", "model_state_dict")
# BatchNorm's batch counter: files saved before PyTorch 0.4.1 lack it.
_COUNTER = ".num_batches_tracked"


def read_weights_file(
    path: str | Path, architecture: Mapping[str, torch.Size], head: Set[str], what: str
) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a weights file, under the model's names, classifier
    left out: :func:`read_state_dict`, then :func:`match_state_dict`.

    Raises:
        BackboneError: as :func:`read_state_dict` and :func:`match_state_dict`.
    """
    path = Path(path)
    state = read_state_dict(path)
    ordered = path.suffix != ".safetensors"
    return match_state_dict(state, architecture, head, str(path), what, ordered=ordered)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, in the file's order (a pickle's) or by name
    (a ``.safetensors`` file's, which keeps no other).

    Raises:
        BackboneError: the file cannot be read, holds objects other than tensors
            (a pickle ``weights_only`` refuses), or is not a name -> tensor mapping.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own and OS errors
            raise BackboneError(f"cannot read weights file {str(path)!r}: {err}") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if isinstance(err, pickle.UnpicklingError) and refused:
            raise BackboneError(
                f"weights file {str(path)!r} holds objects other than tensors "
                f"({refused.group(1)}), which are never loaded (torch.load with "
                "weights_only=True refused them); save the model's state_dict() instead"
            ) from err
        raise BackboneError(f"cannot read weights file {str(path)!r}: {one_line(err)}") from err
    for key in _NESTED:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise BackboneError(f"weights file {str(path)!r} is not a state dict (name -> tensor)")
    return dict(state)


def match_state_dict(
    state: Mapping[str, torch.Tensor],
    architecture: Mapping[str, torch.Size],
    head: Set[str],
    source: str,
    what: str,
    *,
    ordered: bool = True,
) -> dict[str, torch.Tensor]:
    """``state``'s tensors under the model's names, the classifier's left out.

    When every name in ``state`` is one of the model's, the names are kept.
    Otherwise the tensors are paired with the model's by order: with all of
    ``architecture`` or all but ``head`` (the file with or without its
    classifier), BatchNorm's counters counted or not. A pairing is used only
    when the counts are equal and every tensor has the shape of its partner
    (the classifier's may differ: another class count).

    Args:
        state: the file's tensors, in the file's order.
        architecture: the whole model's state dict shapes in order, classifier included.
        head: the names in ``architecture`` of the classifier's tensors.
        source: the weights file, named in errors.
        what: the model, named in errors (e.g. ``timm model 'efficientnet_lite0'``).
        ordered: ``state`` is in the order it was saved in (``False``: a
            ``.safetensors`` file's, which cannot be paired by order).

    Raises:
        BackboneError: the names differ and no pairing fits; names the first
            tensor whose shape differs, or the counts.
    """
    if all(name in architecture for name in state):
        return {name: tensor for name, tensor in state.items() if name not in head}
    if not ordered:
        unexpected = [n for n in state if n not in architecture]
        raise BackboneError(
            f"weights file {source!r} does not fit {what}: unexpected keys "
            f"[{first_few(unexpected)}], and a .safetensors file keeps no order to pair its "
            "tensors by; save the state dict with torch.save (.pth) or under the model's names"
        )
    orders = _orders(architecture, head)
    fitting = [names for names in orders if len(names) == len(state)]
    if not fitting:
        missing = [n for n in orders[-1] if n not in state]  # no classifier, no counters
        unexpected = [n for n in state if n not in architecture]
        counts = " or ".join(str(n) for n in sorted({len(names) for names in orders}))
        raise BackboneError(
            f"weights file {source!r} does not fit {what}: missing keys [{first_few(missing)}], "
            f"unexpected keys [{first_few(unexpected)}]; nor can its {len(state)} tensors be "
            f"paired by order with the model's {counts} (with and without its classifier "
            "and BatchNorm counters)"
        )
    mismatches = [_first_mismatch(state, names, architecture, head) for names in fitting]
    for names, mismatch in zip(fitting, mismatches, strict=True):
        if mismatch is None:
            log.info(
                "%s: names differ from %s; %d tensors paired by order", source, what, len(state)
            )
            pairs = zip(names, state.values(), strict=True)
            return {name: tensor for name, tensor in pairs if name not in head}
    raise BackboneError(
        f"weights file {source!r} does not fit {what}: its names differ and, paired by order, "
        f"{mismatches[0]}"
    )


def _orders(architecture: Mapping[str, torch.Size], head: Set[str]) -> list[list[str]]:
    """The model's names in order: whole, without the classifier, each without counters."""
    whole = list(architecture)
    body = [name for name in whole if name not in head]
    orders: list[list[str]] = []
    for names in (whole, body):
        for order in (names, [n for n in names if not n.endswith(_COUNTER)]):
            if order not in orders:
                orders.append(order)
    return orders


def _first_mismatch(
    state: Mapping[str, torch.Tensor],
    names: list[str],
    architecture: Mapping[str, torch.Size],
    head: Set[str],
) -> str | None:
    for index, ((key, tensor), name) in enumerate(zip(state.items(), names, strict=True)):
        if name not in head and tuple(tensor.shape) != tuple(architecture[name]):
            return (
                f"tensor {index + 1} of {len(names)}, {key!r}, is {list(tensor.shape)} where "
                f"the model's {name!r} is {list(architecture[name])}"
            )
    return None
