"""Rebuild a trained classifier from its checkpoint alone (no config file needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from moths_framework.model.backbone import WEIGHT_SOURCES
from moths_framework.model.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    StateDict,
    checkpoint_meta,
    read_weights,
)
from moths_framework.model.lightning import MothsClassifier
from moths_framework.model.trust import checked_plugin_class, checkpoints_trusted

__all__ = [
    "check_model_fits",
    "classifier_from_checkpoint",
    "classifier_from_weights",
    "load_classifier",
]


def load_classifier(source: str | Path) -> MothsClassifier:
    """The trained model of a ``.ckpt``, a ``.safetensors`` zoo checkpoint or
    ``zoo:ID[@VERSION]``, in eval mode on the CPU."""
    return classifier_from_weights(*read_weights(source))


def classifier_from_checkpoint(checkpoint: dict[str, Any]) -> MothsClassifier:
    """The trained model of a checkpoint read by ``read_checkpoint``, in eval mode."""
    return classifier_from_weights(checkpoint["state_dict"], checkpoint_meta(checkpoint))


def classifier_from_weights(state_dict: StateDict, meta: CheckpointMeta) -> MothsClassifier:
    """The model ``meta`` describes, holding ``state_dict``, in eval mode."""
    model = MothsClassifier(
        backbone=_build_backbone(meta.backbone),
        hierarchy=meta.hierarchy,
        preprocessing=meta.preprocessing,
        dropout=meta.dropout,
    )
    model.load_state_dict(state_dict)
    return model.eval()


def _backbone_class(class_path: object) -> type:
    """The class a checkpoint's backbone spec names: a registered backbone plugin or a
    :class:`Backbone` subclass, unless checkpoints are trusted."""
    hint = "pip install moths-plugin-timm"
    return checked_plugin_class(class_path, "backbones", "backbone", hint)


def _build_backbone(spec: dict[str, Any]) -> torch.nn.Module:
    if not isinstance(spec, dict):
        raise CheckpointError(f"the checkpoint's backbone spec {spec!r} is not a dictionary")
    cls = _backbone_class(spec.get("class_path"))
    init_args = dict(spec.get("init_args") or {})
    if not checkpoints_trusted():  # the checkpoint has the weights: read no other file
        init_args.update({k: v for k, v in WEIGHT_SOURCES.items() if k in init_args})
    return cls(**init_args)


def _backbone_text(spec: dict[str, Any]) -> str:
    args = {k: v for k, v in spec.get("init_args", {}).items() if k not in WEIGHT_SOURCES}
    return f"{spec['class_path']}({', '.join(f'{k}={v!r}' for k, v in sorted(args.items()))})"


def check_model_fits(model: MothsClassifier, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` (one line) unless ``checkpoint`` loads into ``model``.

    Compares parameter names and shapes, so a config naming another backbone
    than the one trained is reported as such instead of a ``load_state_dict``
    traceback.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    if expected == found:
        return
    trained = _backbone_text(checkpoint_meta(checkpoint, path).backbone)
    configured = _backbone_text(model.backbone.spec())
    if trained != configured:
        raise CheckpointError(
            f"{path} was trained with backbone {trained}, the config asks for {configured}: "
            "use the run's own config.yaml or the same model.backbone"
        )
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    shapes = [k for k in sorted(expected.keys() & found.keys()) if expected[k] != found[k]]
    first = (
        f"{shapes[0]} is {list(found[shapes[0]])} in the checkpoint, "
        f"{list(expected[shapes[0]])} in the model"
        if shapes
        else f"e.g. {(missing or unexpected)[0]}"
    )
    raise CheckpointError(
        f"{path} does not fit the configured model: {len(missing)} weights missing, "
        f"{len(unexpected)} unexpected, {len(shapes)} of another shape ({first})"
    )
