"""``TorchvisionBackbone``: a torchvision classification model as a feature extractor."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import models

from moths_framework.model.backbone import Backbone, BackboneError, load_weights_strictly
from moths_framework.model.weights_file import read_weights_file
from moths_framework.preprocessing import Preprocessing

__all__ = ["TorchvisionBackbone", "torchvision_preprocessing"]

# The smallest classification model whose classifier is a Linear layer
# (squeezenet's is a conv); its multi-layer classifier exercises the removal.
SMALL_EXAMPLE = "mobilenet_v3_small"


class TorchvisionBackbone(Backbone):
    """A torchvision classification model whose last ``nn.Linear`` is replaced by identity.

    Args:
        name: a classification model of ``torchvision.models.list_models()``
            (``efficientnet_b7``, ``resnet50``, ``vit_b_16``, ...).
        pretrained: ``False`` for random weights, ``True`` for the model's
            DEFAULT weights (torchvision's download), or the path of a local
            weights file (as ``pretrained_file``).
        pretrained_file: a local weights file, for offline machines: the model's
            state dict (``.safetensors``; ``.pth``/``.pt``, read with
            ``torch.load(weights_only=True)``), its classifier included or not.
            Under other names than torchvision's, a ``.pth`` holding the same
            tensors in torchvision's order is paired by order and shape (see
            :mod:`moths_framework.model.weights_file`). The classifier's weights
            are never loaded: the heads are the framework's.

    Raises:
        BackboneError: unknown or unsupported model name (close matches are
            suggested), a weights file that is missing, unreadable or does not
            fit, both ``pretrained`` and ``pretrained_file``, or a failed download.
    """

    def __init__(
        self, name: str, pretrained: bool | str = False, pretrained_file: str | None = None
    ):
        super().__init__()
        if pretrained is not False and pretrained_file is not None:
            raise BackboneError("give pretrained or pretrained_file, not both")
        weights = pretrained if pretrained_file is None else pretrained_file
        self.model, self._num_features = _create_model(name, weights)
        self._preprocessing = torchvision_preprocessing(name)

    @property
    def num_features(self) -> int:
        return self._num_features

    @property
    def preprocessing(self) -> Preprocessing:
        return self._preprocessing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @classmethod
    def small_example(cls) -> TorchvisionBackbone:
        return cls(SMALL_EXAMPLE)


def classification_models() -> list[str]:
    """Names of torchvision's classification models (no detection, segmentation, video)."""
    return models.list_models(module=torchvision.models)


def torchvision_preprocessing(name: str) -> Preprocessing:
    """The evaluation preprocessing of ``name``'s DEFAULT weights (nothing is downloaded).

    Falls back to ImageNet defaults at 224 when the model has no weights.
    """
    try:
        transform = models.get_model_weights(name).DEFAULT.transforms()
        crop, resize = transform.crop_size[0], transform.resize_size[0]
    except (ValueError, AttributeError, IndexError, TypeError):
        return Preprocessing()
    return Preprocessing(
        input_size=crop,
        crop_pct=crop / resize,
        interpolation=transform.interpolation.value,
        mean=transform.mean,
        std=transform.std,
    )


def _create_model(name: str, pretrained: bool | str) -> tuple[nn.Module, int]:
    """Build the model, strip its classifier and load the weights asked for."""
    _check_name(name)
    weights_file = None if isinstance(pretrained, bool) else Path(pretrained)
    if weights_file is not None and not weights_file.is_file():
        raise BackboneError(f"weights file {str(weights_file)!r} for {name!r} not found")
    weights = models.get_model_weights(name).DEFAULT if pretrained is True else None
    try:
        model = models.get_model(name, weights=weights, **_architecture_kwargs(name))
    except Exception as err:  # downloads and model builders fail in many ways
        if weights is None:
            raise BackboneError(
                f"cannot build torchvision model {name!r}: {type(err).__name__}: {err}"
            ) from err
        raise BackboneError(
            f"could not get pretrained weights for torchvision model {name!r} "
            f"({type(err).__name__}: {err}); on an offline machine set pretrained_file to a "
            "local weights file"
        ) from err
    removed = _remove_auxiliary_heads(model)
    head, num_features = _remove_classifier(model, name)
    if weights_file is not None:
        _load_weights(model, weights_file, name, skip=(head, *removed))
    return model, num_features


def _check_name(name: str) -> None:
    names = classification_models()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.7)
    hint = f"did you mean {', '.join(close)}?" if close else "see the classification models"
    raise BackboneError(f"unknown torchvision classification model {name!r}; {hint}")


def _architecture_kwargs(name: str) -> dict[str, object]:
    """Builder arguments torchvision sets only when it loads DEFAULT weights.

    Passing them always keeps ``pretrained=False`` (how ``spec()`` rebuilds a
    checkpoint), ``True`` and a weights file on the same architecture.
    """
    module = models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
    if module == "vision_transformer":  # vit_h_14's DEFAULT weights are at 518 px
        return {"image_size": models.get_model_weights(name).DEFAULT.meta["min_size"][0]}
    if module in ("googlenet", "inception"):
        # The weights expect this input rescale; init_weights=False skips scipy's
        # slow truncated-normal init (and its FutureWarning), as pretrained builds do.
        return {"transform_input": True, "init_weights": False}
    return {}


def _remove_classifier(model: nn.Module, name: str) -> tuple[str, int]:
    """Replace the last ``nn.Linear`` (fc, classifier[-1], heads.head) with identity."""
    linears = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BackboneError(
            f"torchvision model {name!r} has no Linear classifier to remove; it is not supported"
        )
    path, linear = linears[-1]
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent), attr, nn.Identity())
    return path, linear.in_features


def _remove_auxiliary_heads(model: nn.Module) -> tuple[str, ...]:
    """Drop inception_v3's / googlenet's auxiliary classifiers.

    In training mode they make ``forward`` return a (logits, aux) tuple instead
    of one tensor, and their parameters would never see a gradient.
    """
    if not getattr(model, "aux_logits", False):
        return ()
    model.aux_logits = False
    removed = tuple(a for a in ("AuxLogits", "aux1", "aux2") if getattr(model, a, None) is not None)
    for attr in removed:
        setattr(model, attr, None)
    return removed


def _load_weights(model: nn.Module, path: Path, name: str, skip: tuple[str, ...]) -> None:
    """Load a local weights file strictly, except the tensors of the removed heads ``skip``."""
    architecture = _architecture(name)
    head = {k for k in architecture if any(k.startswith(f"{s}.") for s in skip)}
    what = f"torchvision model {name!r}"
    state = read_weights_file(path, architecture, head, what)
    load_weights_strictly(model, state, str(path), what)


def _architecture(name: str) -> dict[str, torch.Size]:
    """The shapes of the whole model's state dict, heads included, in order (meta device:
    no memory, no initialisation)."""
    with torch.device("meta"):
        whole = models.get_model(name, weights=None, **_architecture_kwargs(name))
    return {k: v.shape for k, v in whole.state_dict().items()}
