"""Warm start (``model.init_from``): begin training from another model's weights.

The backbone is loaded whole; each head keeps the rows of the classes whose
names the source model also has at that rank, and new classes start from
their fresh initialisation. Works across hierarchies that differ (a region's
checklist is not the source's), so fine-tuning someone else's model for your
own region is one line of YAML.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from moths_framework.hierarchy import LabelHierarchy

if TYPE_CHECKING:
    from moths_framework.model.lightning import MothsClassifier

__all__ = ["WarmStartError", "load_source", "warm_start"]

log = logging.getLogger(__name__)

_BACKBONE = "net.backbone."


class WarmStartError(ValueError):
    """The ``init_from`` model cannot be read, or its backbone does not fit."""


def load_source(init_from: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and ``moths`` metadata of a ``.ckpt``, a ``.safetensors`` zoo checkpoint,
    or ``zoo:ID[@VERSION]`` (its checkpoint file, fetched and verified).

    Raises:
        WarmStartError: the file is missing or not a moths checkpoint.
    """
    from moths_framework import zoo
    from moths_framework.zoo.checkpoint import load_zoo_checkpoint

    try:
        path = zoo.resolve(init_from, role="checkpoint")
        if not path.is_file():
            raise WarmStartError(f"init_from: checkpoint {path} not found")
        if path.suffix == ".safetensors":
            return load_zoo_checkpoint(path)
    except zoo.ZooError as err:
        raise WarmStartError(f"init_from: {err}") from err
    from moths_framework.model.checkpoint import CheckpointError, read_checkpoint
    from moths_framework.model.lightning import CHECKPOINT_KEY

    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as err:
        raise WarmStartError(f"init_from: {err}") from err
    return checkpoint["state_dict"], checkpoint[CHECKPOINT_KEY]


def warm_start(model: MothsClassifier, init_from: str | Path) -> dict[str, tuple[int, int]]:
    """Load ``init_from``'s backbone and matching head rows into ``model``.

    Returns:
        rank -> (classes carried over, classes in ``model``).

    Raises:
        WarmStartError: unreadable source, or its backbone's tensors do not fit.
    """
    state, meta = load_source(init_from)
    source = LabelHierarchy.from_json(meta["hierarchy"])
    own = model.state_dict()
    _check_backbone_fits(own, state, init_from)
    merged = {k: state[k] for k in own if k.startswith(_BACKBONE)}
    carried: dict[str, tuple[int, int]] = {}
    for rank in model.hierarchy.ranks:
        names = model.hierarchy.classes(rank)
        weight, bias = (
            own[f"net.heads.{rank}.weight"].clone(),
            own[f"net.heads.{rank}.bias"].clone(),
        )
        rows = _matching_rows(names, source, rank)
        if rows:
            src_weight, src_bias = (
                state[f"net.heads.{rank}.weight"],
                state[f"net.heads.{rank}.bias"],
            )
            if src_weight.shape[1] != weight.shape[1]:
                raise WarmStartError(f"init_from {init_from}: head {rank} has other feature width")
            for new_row, old_row in rows:
                weight[new_row], bias[new_row] = src_weight[old_row], src_bias[old_row]
        merged[f"net.heads.{rank}.weight"], merged[f"net.heads.{rank}.bias"] = weight, bias
        carried[rank] = (len(rows), len(names))
    model.load_state_dict(merged, strict=False)
    total = sum(c for c, _ in carried.values()), sum(n for _, n in carried.values())
    per_rank = ", ".join(f"{rank} {c}/{n}" for rank, (c, n) in carried.items())
    log.info(
        "warm start from %s: backbone and %d of %d classes carried over (%s)",
        init_from,
        *total,
        per_rank,
    )
    return carried


def _matching_rows(names: list[str], source: LabelHierarchy, rank: str) -> list[tuple[int, int]]:
    if rank not in source.ranks:
        return []
    index = {name: i for i, name in enumerate(source.classes(rank))}
    return [(i, index[name]) for i, name in enumerate(names) if name in index]


def _check_backbone_fits(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], init_from: str | Path
) -> None:
    ours = {k: tuple(v.shape) for k, v in own.items() if k.startswith(_BACKBONE)}
    theirs = {k: tuple(v.shape) for k, v in state.items() if k.startswith(_BACKBONE)}
    missing = sorted(ours.keys() - theirs.keys())
    wrong = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
    if missing or wrong:
        few = ", ".join((missing + wrong)[:3])
        raise WarmStartError(
            f"init_from {init_from}: its backbone does not fit this model's "
            f"({len(missing)} tensors missing, {len(wrong)} of other shape, e.g. {few}); "
            "use the same model.backbone as the source model"
        )
