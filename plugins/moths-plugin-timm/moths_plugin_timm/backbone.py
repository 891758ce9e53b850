"""``TimmBackbone``: any timm model as a moths-framework feature extractor.

timm is imported when a model is built, not with this module: loading the plugin
(as ``moths-fit --help`` does, to list it) costs no timm.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moths_framework.model.backbone import Backbone, BackboneError, load_weights_strictly
from moths_framework.model.weights_file import read_weights_file
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
            the path of a local weights file (as ``pretrained_file``).
        drop_path_rate: stochastic-depth rate, for models that support it.
        pretrained_file: a local weights file, for offline machines: the model's
            state dict (``.safetensors``; ``.pth``/``.pt``/``.bin``, read with
            ``torch.load(weights_only=True)``), its classifier included or not.
            Under other names than timm's, a ``.pth`` holding the same tensors in
            timm's order is paired by order and shape (see
            :mod:`moths_framework.model.weights_file`).
            The classifier's weights are never loaded: the heads are the framework's.

    Raises:
        BackboneError: unknown model name (close matches are suggested), a
            weights file that is missing, unreadable or does not fit (naming the
            first tensor that does not), both ``pretrained`` and
            ``pretrained_file``, a failed download, or ``drop_path_rate`` on a
            model without stochastic depth.
    """

    def __init__(
        self,
        name: str,
        pretrained: bool | str = False,
        drop_path_rate: float = 0.0,
        pretrained_file: str | None = None,
    ):
        super().__init__()
        if pretrained is not False and pretrained_file is not None:
            raise BackboneError("give pretrained or pretrained_file, not both")
        self.model = _create_model(
            name, pretrained if pretrained_file is None else pretrained_file, drop_path_rate
        )
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
    import timm
    from timm.models import parse_model_name

    source, model_name = parse_model_name(name)
    if source is not None or timm.is_model(model_name):
        return  # hf-hub: / local-dir: names are resolved by timm itself
    architecture = model_name.split(".", 1)[0]
    close = difflib.get_close_matches(architecture, timm.list_models(), n=5, cutoff=0.7)
    hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
    raise BackboneError(f"unknown timm model {name!r}; {hint}")


def _create_model(name: str, pretrained: bool | str, drop_path_rate: float) -> nn.Module:
    import timm

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
        _load_weights(model, weights, name, kwargs)
    return model


def _build_failure(name: str, pretrained: bool | str, drop_path_rate: float, err: Exception) -> str:
    cause = f"{type(err).__name__}: {err}"
    if isinstance(err, TypeError) and drop_path_rate and "drop_path_rate" in str(err):
        return f"timm model {name!r} has no stochastic depth; set drop_path_rate to 0 ({cause})"
    if pretrained is True:
        return (
            f"could not get pretrained weights for timm model {name!r} ({cause}); "
            "on an offline machine set pretrained_file to a local weights file"
        )
    return f"cannot build timm model {name!r}: {cause}"


def _load_weights(model: nn.Module, path: Path, name: str, kwargs: dict[str, Any]) -> None:
    """Load a local weights file strictly, the classifier excepted.

    timm's own ``pretrained_cfg_overlay=dict(file=...)`` route loads non-strictly
    whenever ``num_classes`` differs from the weights' (always, with 0), so a
    file of the wrong model would load nothing and say nothing.
    """
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    architecture = _architecture(name, kwargs)
    head = {k for k in architecture if any(k.startswith(f"{h}.") for h in heads)}
    what = f"timm model {name!r}"
    state = read_weights_file(path, architecture, head, what)
    load_weights_strictly(model, state, str(path), what)


def _architecture(name: str, kwargs: dict[str, Any]) -> dict[str, torch.Size]:
    """The shapes of the whole model's state dict, classifier included, in order.

    Built on the meta device: no memory, no initialisation.
    """
    import timm

    kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"}
    with torch.device("meta"):
        whole = timm.create_model(name, **kwargs)
    return {k: v.shape for k, v in whole.state_dict().items()}
