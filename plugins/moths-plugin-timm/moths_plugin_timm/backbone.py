"""``TimmBackbone``: any timm model as a moths-framework feature extractor."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import load_state_dict, parse_model_name
from torch import nn

from moths_framework.model.backbone import Backbone, BackboneError, load_weights_strictly
from moths_framework.preprocessing import Preprocessing

__all__ = ["TimmBackbone", "timm_preprocessing"]

log = logging.getLogger(__name__)

SMALL_EXAMPLE = "test_efficientnet"  # ~0.1 M parameters, builds in milliseconds


class TimmBackbone(Backbone):
    """A timm model without its classifier: ``(N, 3, H, W)`` -> pooled ``(N, num_features)``.

    Args:
        name: a timm model name, optionally with a pretrained tag
            (``efficientnet_b0``, ``resnet50.a1_in1k``); see ``timm.list_models()``.
        pretrained: ``False`` for random weights, ``True`` for timm's download, or
            the path of a local weights file (``.safetensors``, ``.pth``, ``.bin``:
            a timm state dict, classifier included or not) for offline machines.
        drop_path_rate: stochastic-depth rate, for models that support it.

    Raises:
        BackboneError: unknown model name (close matches are suggested), a
            weights file that is missing or does not fit, a failed download, or
            ``drop_path_rate`` on a model without stochastic depth.
    """

    def __init__(self, name: str, pretrained: bool | str = False, drop_path_rate: float = 0.0):
        super().__init__()
        self.model = _create_model(name, pretrained, drop_path_rate)
        self._preprocessing = timm_preprocessing(self.model.pretrained_cfg)

    @property
    def num_features(self) -> int:
        # With num_classes=0 some models (MobileNetV3, VGG, ...) still apply a
        # pre-logits layer; head_hidden_size is the width of what forward returns.
        return int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @classmethod
    def small_example(cls) -> TimmBackbone:
        return cls(SMALL_EXAMPLE)


def timm_preprocessing(cfg: dict[str, Any]) -> Preprocessing:
    """The evaluation preprocessing described by a timm ``pretrained_cfg``.

    Raises:
        BackboneError: the config needs what :class:`Preprocessing` cannot say.
    """
    if cfg.get("crop_mode", "center") != "center":
        # Preprocessing only knows timm's default resize-shorter-side + centre crop.
        log.warning(
            "timm model %s uses crop_mode=%r; the framework applies a centre crop",
            cfg.get("architecture"),
            cfg["crop_mode"],
        )
    defaults = Preprocessing()
    try:
        return Preprocessing(
            input_size=tuple(cfg.get("input_size", (3, *defaults.input_size))[-2:]),
            crop_pct=cfg.get("crop_pct") or defaults.crop_pct,
            interpolation=cfg.get("interpolation") or defaults.interpolation,
            mean=cfg.get("mean", defaults.mean),
            std=cfg.get("std", defaults.std),
        )
    except ValueError as err:  # e.g. volo_d5_512's crop_pct 1.15
        raise BackboneError(
            f"the preprocessing of timm model {cfg.get('architecture')!r} is not supported: {err}"
        ) from err


def _check_name(name: str) -> None:
    source, model_name = parse_model_name(name)
    if source is not None or timm.is_model(model_name):
        return  # hf-hub: / local-dir: names are resolved by timm itself
    architecture = model_name.split(".", 1)[0]
    close = difflib.get_close_matches(architecture, timm.list_models(), n=5, cutoff=0.7)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
    raise BackboneError(f"unknown timm model {name!r}; {hint}")


def _create_model(name: str, pretrained: bool | str, drop_path_rate: float) -> nn.Module:
    _check_name(name)
    kwargs: dict[str, Any] = {"num_classes": 0, "exportable": True}
    if drop_path_rate:
        # Only passed when set: models without stochastic depth reject the argument.
        kwargs["drop_path_rate"] = drop_path_rate
    weights = None if isinstance(pretrained, bool) else Path(pretrained)
    if weights is not None and not weights.is_file():
        raise BackboneError(f"weights file {str(weights)!r} for timm model {name!r} not found")
    try:
        model = timm.create_model(name, pretrained=pretrained is True, **kwargs)
    except Exception as err:  # downloads and model builders fail in many ways
        raise BackboneError(_build_failure(name, pretrained, drop_path_rate, err)) from err
    if weights is not None:
        _load_weights(model, weights, name)
    return model


def _build_failure(name: str, pretrained: bool | str, drop_path_rate: float, err: Exception) -> str:
    cause = f"{type(err).__name__}: {err}"
    if isinstance(err, TypeError) and drop_path_rate and "drop_path_rate" in str(err):
        return f"timm model {name!r} has no stochastic depth; set drop_path_rate to 0 ({cause})"
    if pretrained is True:
        return (
            f"could not get pretrained weights for timm model {name!r} ({cause}); "
            "on an offline machine set pretrained to a local weights file"
        )
    return f"cannot build timm model {name!r}: {cause}"


def _load_weights(model: nn.Module, path: Path, name: str) -> None:
    """Load a local timm state dict strictly, the classifier excepted.

    timm's own ``pretrained_cfg_overlay=dict(file=...)`` route loads non-strictly
    whenever ``num_classes`` differs from the weights' (always, with 0), so a
    file of the wrong model would load nothing and say nothing.
    """
    try:
        state = load_state_dict(str(path))
    except Exception as err:  # torch.load / safetensors raise many types
        raise BackboneError(f"cannot read weights file {str(path)!r}: {err}") from err
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    state = {k: v for k, v in state.items() if not any(k.startswith(f"{h}.") for h in heads)}
    load_weights_strictly(model, state, str(path), f"timm model {name!r}")
