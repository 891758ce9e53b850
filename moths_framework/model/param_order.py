"""Order a module's parameters by where the forward pass first uses them.

Registration order is not data-flow order: a ViT registers ``cls_token`` on the
root module, so ``named_parameters()`` lists it before the patch-embedding conv
that actually sees the image. Unfreeze policies count from the output end, so
they need the order in which data meets the parameters. One inference-mode
forward pass, observed through a ``TorchFunctionMode``, records when each
parameter is first handed to a torch function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["parameters_by_first_use"]


class _FirstUse(TorchFunctionMode):
    """Records the name of each known parameter the first time an op receives it."""

    def __init__(self, names_by_id: dict[int, str]) -> None:
        super().__init__()
        self._names_by_id = names_by_id
        self.order: list[str] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        self._record(args)
        self._record(kwargs.values())
        return func(*args, **kwargs)

    def _record(self, values: Iterable[Any]) -> None:
        for value in values:
            if isinstance(value, (list, tuple)):  # torch.cat([cls_token, x]) and friends
                self._record(value)
            elif isinstance(value, torch.Tensor):
                name = self._names_by_id.pop(id(value), None)
                if name is not None:
                    self.order.append(name)


def parameters_by_first_use(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of ``module``'s parameters, input end first.

    Runs ``module(example)`` once in eval mode without gradients (BatchNorm
    statistics and ``.grad`` are untouched; train/eval flags are restored).
    A parameter the forward pass never uses keeps its registration place,
    right after the parameter registered before it.

    Args:
        module: the network; its parameters may be frozen.
        example: an input batch the network accepts.

    Returns:
        Every name of ``module.named_parameters()`` exactly once.
    """
    registered = [name for name, _ in module.named_parameters()]
    mode = _FirstUse({id(p): name for name, p in module.named_parameters()})
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad(), mode:
            module(example)
    finally:
        for m, training in flags:
            m.training = training
    rank = {name: i for i, name in enumerate(mode.order)}
    keys: dict[str, tuple[int, int, int]] = {}
    previous = -1
    for position, name in enumerate(registered):
        if name in rank:
            previous = rank[name]
            keys[name] = (previous, 0, position)
        else:
            keys[name] = (previous, 1, position)
    return sorted(registered, key=keys.__getitem__)
