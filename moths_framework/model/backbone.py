"""Backbone plugin interface (entry-point group ``moths_framework.backbones``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from moths_framework.messages import first_few
from moths_framework.model.param_order import parameters_by_first_use
from moths_framework.model.spec import RecordsInitArgs
from moths_framework.preprocessing import Preprocessing

__all__ = ["WEIGHT_SOURCES", "Backbone", "BackboneError", "load_weights_strictly"]

# Constructor arguments that name weights to load, with the value that loads none:
# a checkpoint carries the trained weights, so its spec never asks for them again.
WEIGHT_SOURCES = {"pretrained": False, "pretrained_file": None}


class BackboneError(ValueError):
    """A backbone cannot be built: unknown model name, bad weights file, ..."""


class Backbone(RecordsInitArgs, nn.Module, ABC):
    """An image feature extractor: ``(N, 3, H, W)`` float tensor -> ``(N, num_features)``.

    An implementation must:

    - return pooled features (no classifier) from ``forward``;
    - expose :attr:`num_features` and :attr:`preprocessing` (input size, mean,
      std, interpolation, crop fraction: the model's own pretrained config);
    - accept a ``(1, 3, *preprocessing.input_size)`` input, which the default
      :meth:`ordered_parameters` traces to order parameters from input to
      output (unfreeze policies unfreeze from the output end);
    - provide :meth:`small_example`, so the contract test in ``tests/`` runs on
      it the moment the plugin is installed;
    - accept ``pretrained`` as ``False``, ``True`` (the library's download) or a
      local weights file path, so offline machines can train; a plugin may also take
      ``pretrained_file`` (a local weights file, read with
      :mod:`moths_framework.model.weights_file`).

    The constructor arguments are recorded (:meth:`spec`), so a checkpoint can
    rebuild the same backbone without its config file.
    """

    @property
    @abstractmethod
    def num_features(self) -> int:
        """Length of the feature vector ``forward`` returns."""

    @property
    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """The evaluation preprocessing the backbone's weights expect."""

    @classmethod
    def small_example(cls) -> Backbone:
        """A small instance with random weights, for the contract test every plugin runs."""
        raise NotImplementedError(f"{cls.__name__} does not provide small_example()")

    def ordered_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs from the input end to the output end.

        Registration order is not data-flow order (a ViT registers ``cls_token``
        before the patch embedding), so the default traces one forward pass at
        the preprocessing input size, once, and caches the order.
        """
        params = dict(self.named_parameters())
        order = self.__dict__.get("_param_order")
        if order is None or set(order) != params.keys():
            first = next(iter(params.values()))
            size = (1, 3, *self.preprocessing.input_size)
            example = torch.zeros(size, device=first.device, dtype=first.dtype)
            order = parameters_by_first_use(self, example)
            self.__dict__["_param_order"] = order
        return [(name, params[name]) for name in order]

    def spec(self) -> dict[str, Any]:
        """``class_path`` and ``init_args`` that rebuild this backbone (random weights)."""
        return self._spec(WEIGHT_SOURCES)


def load_weights_strictly(model: nn.Module, state: dict[str, Any], source: str, what: str) -> None:
    """Load ``state`` into ``model``; every key must fit (BatchNorm's counters excepted).

    A plugin that loads a local weights file calls this after dropping the
    classifier's keys, so a file of the wrong model fails loudly instead of
    loading nothing.

    Args:
        model: the network.
        state: parameter name -> tensor.
        source: the weights file, named in errors.
        what: the model, named in errors (e.g. ``timm model 'resnet18'``).

    Raises:
        BackboneError: keys are missing or unexpected, or shapes differ.
    """
    expected = model.state_dict().keys()
    # Files saved before PyTorch 0.4.1 lack BatchNorm's num_batches_tracked; BatchNorm fills it in.
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise BackboneError(
            f"weights file {source!r} does not fit {what}: "
            f"missing keys [{first_few(missing)}], unexpected keys [{first_few(unexpected)}]"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise BackboneError(f"weights file {source!r} does not fit {what}: {err}") from err
