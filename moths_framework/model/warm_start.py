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
from typing import TYPE_CHECKING

from moths_framework import zoo
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.checkpoint import CheckpointError, CheckpointMeta, read_weights

if TYPE_CHECKING:
    from moths_framework.model.checkpoint import StateDict

__all__ = ["WarmStartError", "load_source", "warm_start"]

log = logging.getLogger(__name__)

_BACKBONE = "net.backbone."


class WarmStartError(ValueError):
    """The ``init_from`` model cannot be read, or its backbone does not fit."""


def load_source(init_from: str | Path) -> tuple[StateDict, CheckpointMeta]:
    """:func:`~moths_framework.model.checkpoint.read_weights` of ``init_from``, its errors
    as :class:`WarmStartError` (``init_from: ...``).

    Raises:
        WarmStartError: the file is missing, not a moths checkpoint, or not in the zoo.
    """
    try:
        return read_weights(init_from)
    except (CheckpointError, zoo.ZooError) as err:
        raise WarmStartError(f"init_from: {err}") from err


def warm_start(
    own: StateDict,
    hierarchy: LabelHierarchy,
    source: tuple[StateDict, CheckpointMeta],
    init_from: str | Path,
) -> StateDict:
    """The weights to load into a model (``load_state_dict(..., strict=False)``): the
    source's backbone, and each head's rows of the classes the source also has.

    Args:
        own: the model's own state dict (fresh rows come from it).
        hierarchy: the model's label hierarchy.
        source: the source model's weights and metadata (:func:`load_source`).
        init_from: the source's name, for messages.

    Returns:
        the backbone's and the heads' tensors; logs how many classes were carried over.

    Raises:
        WarmStartError: the source's backbone tensors do not fit.
    """
    state, meta = source
    _check_backbone_fits(own, state, init_from)
    merged = {k: state[k] for k in own if k.startswith(_BACKBONE)}
    carried: dict[str, tuple[int, int]] = {}
    for rank in hierarchy.ranks:
        names = hierarchy.classes(rank)
        weight, bias = (
            own[f"net.heads.{rank}.weight"].clone(),
            own[f"net.heads.{rank}.bias"].clone(),
        )
        rows = _matching_rows(names, meta.hierarchy, rank)
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
    total = sum(c for c, _ in carried.values()), sum(n for _, n in carried.values())
    per_rank = ", ".join(f"{rank} {c}/{n}" for rank, (c, n) in carried.items())
    log.info(
        "warm start from %s: backbone and %d of %d classes carried over (%s)",
        init_from,
        *total,
        per_rank,
    )
    return merged


def _matching_rows(names: list[str], source: LabelHierarchy, rank: str) -> list[tuple[int, int]]:
    if rank not in source.ranks:
        return []
    index = {name: i for i, name in enumerate(source.classes(rank))}
    return [(i, index[name]) for i, name in enumerate(names) if name in index]


def _check_backbone_fits(own: StateDict, state: StateDict, init_from: str | Path) -> None:
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
