"""Unfreeze policies: which backbone parameters train at each epoch.

Plugin interface :class:`UnfreezePolicy` (entry-point group
``moths_framework.unfreeze_policies``), a Lightning ``BaseFinetuning``
callback, and the built-ins ``frozen``, ``gradual``, ``milestones`` and
``full``.

The trainable set is a pure function of the epoch: a policy only says which
fraction of the backbone (counted from its output end) trains at epoch ``e``.
That makes resuming exact: at epoch ``k`` the frozen set of epoch ``k`` is
applied again, whatever the callback's saved state says. Every backbone
parameter sits in the optimizer from the start (in its own parameter group,
see ``MothsClassifier.configure_optimizers``); a frozen one has no gradient,
so the optimizer leaves it alone.

Frozen also means the frozen part computes what it computes at inference: it
runs in eval mode, so BatchNorm running statistics stay put and dropout (or
drop-path) inside it does not drop. ``train_bn=True`` keeps the frozen part's
norm layers in training mode instead (batch statistics, running statistics
following the data), as timm's and Lightning's ``freeze(train_bn=...)`` allow.
A frozen module is one whose parameters are all frozen; a module without
parameters of its own (a ReLU, a dropout) follows the smallest block around
it that has parameters. Lightning resets no module modes between training
steps, but the policy re-applies the modes at every training batch anyway,
so nothing else can silently undo them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = [
    "FrozenBackbone",
    "FullUnfreeze",
    "GradualUnfreeze",
    "MilestoneUnfreeze",
    "UnfreezePolicy",
    "frozen_blocks",
    "trainable_parameters",
]


def trainable_parameters(backbone: nn.Module, fraction: float) -> list[nn.Parameter]:
    """The last ``fraction`` of the backbone's parameters, input to output order."""
    ordered = [p for _, p in backbone.ordered_parameters()]
    count = math.floor(round(fraction * len(ordered), 6))
    return ordered[len(ordered) - count :] if count else []


def frozen_blocks(module: nn.Module, frozen: set[int]) -> list[nn.Module]:
    """The largest submodules of ``module`` (itself included) whose parameters are
    all in ``frozen`` (parameter ids); modules without any parameters are not listed."""
    params = list(module.parameters())
    if params and all(id(p) in frozen for p in params):
        return [module]
    return [block for child in module.children() for block in frozen_blocks(child, frozen)]


class UnfreezePolicy(BaseFinetuning, ABC):
    """Plugin interface: a ``BaseFinetuning`` callback driven by :meth:`fraction`.

    An implementation only provides :meth:`fraction`; this base class applies
    it to ``pl_module.backbone`` at the start of every training epoch.

    Args:
        train_bn: keep norm layers of the frozen part in training mode (their
            running statistics then follow the data). Default: the whole frozen
            part runs in eval mode.

    Under a multi-process strategy (DDP) every parameter keeps
    ``requires_grad=True``, because DDP only synchronises the parameters that
    required gradients when it wrapped the model; frozen ones get their
    gradients dropped before the optimizer step instead.
    """

    def __init__(self, train_bn: bool = False) -> None:
        super().__init__()
        self.train_bn = train_bn
        self._frozen: list[nn.Parameter] = []
        self._frozen_blocks: list[nn.Module] = []
        self._drop_grads = False

    @abstractmethod
    def fraction(self, epoch: int) -> float:
        """Fraction of backbone parameters (from the output end) trainable at ``epoch``."""

    def apply(self, pl_module: pl.LightningModule, epoch: int) -> None:
        """Make exactly the parameters of ``epoch`` trainable."""
        backbone = pl_module.backbone
        fraction = min(max(float(self.fraction(epoch)), 0.0), 1.0)
        trainable = {id(p) for p in trainable_parameters(backbone, fraction)}
        self._frozen = [p for p in backbone.parameters() if id(p) not in trainable]
        for p in backbone.parameters():
            p.requires_grad = self._drop_grads or id(p) in trainable
        self._frozen_blocks = frozen_blocks(backbone, {id(p) for p in self._frozen})

    def set_modes(self, pl_module: pl.LightningModule) -> None:
        """Backbone in training mode, except the frozen part of the last :meth:`apply`
        (see the module docstring). Called by the training hooks, not at setup:
        Lightning warns about modules in eval mode when fitting starts."""
        pl_module.backbone.train()
        for block in self._frozen_blocks:
            block.eval()
            if self.train_bn:
                for m in block.modules():
                    if isinstance(m, _NormBase):
                        m.train()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._drop_grads = trainer.world_size > 1
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.apply(pl_module, 0)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Any) -> None:
        self.apply(pl_module, epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not BaseFinetuning's: it stores and restores parameter groups, which we keep fixed.
        self.apply(pl_module, trainer.current_epoch)
        self.set_modes(pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.set_modes(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # BaseFinetuning would overwrite the restored optimizer's groups here (and
        # re-freeze on resume, Lightning #21901); the epoch alone decides for us.
        self._restarting = False

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any
    ) -> None:
        if self._drop_grads:
            for p in self._frozen:
                p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = False


class FrozenBackbone(UnfreezePolicy):
    """Train the heads only; the backbone never changes, running statistics included
    (the seed's default).

    Args:
        train_bn: let the backbone's BatchNorm statistics follow the data (its
            parameters stay frozen).
    """

    def fraction(self, epoch: int) -> float:
        return 0.0


class FullUnfreeze(UnfreezePolicy):
    """Train every backbone parameter from the first epoch."""

    def fraction(self, epoch: int) -> float:
        return 1.0


class GradualUnfreeze(UnfreezePolicy):
    """The seed's linear unfreezing.

    The fraction at epoch ``e`` is
    ``interp(e, [epoch_start - 1, epoch_start + epoch_duration], [0, final_fraction])``,
    counted from the output end of the backbone.

    Args:
        epoch_start: first epoch at which part of the backbone trains.
        epoch_duration: epochs over which the fraction grows to ``final_fraction``.
        final_fraction: fraction of the backbone trainable at the end, in [0, 1].
        train_bn: keep norm layers of the frozen part in training mode.
    """

    def __init__(
        self,
        epoch_start: int = 1,
        epoch_duration: int = 5,
        final_fraction: float = 1.0,
        train_bn: bool = False,
    ) -> None:
        super().__init__(train_bn)
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
        if epoch_duration < 0:
            raise ValueError(f"epoch_duration must be >= 0, got {epoch_duration}")
        self.epoch_start = epoch_start
        self.epoch_duration = epoch_duration
        self.final_fraction = final_fraction

    def fraction(self, epoch: int) -> float:
        xs = [self.epoch_start - 1, self.epoch_start + self.epoch_duration]
        return float(np.interp(epoch, xs, [0.0, self.final_fraction]))


class MilestoneUnfreeze(UnfreezePolicy):
    """Step-wise unfreezing: from ``epochs[i]`` on, ``fractions[i]`` of the backbone trains.

    Args:
        epochs: increasing epochs at which the fraction changes.
        fractions: the fraction from each of those epochs on, in [0, 1].
        train_bn: keep norm layers of the frozen part in training mode.
    """

    def __init__(
        self, epochs: Sequence[int], fractions: Sequence[float], train_bn: bool = False
    ) -> None:
        super().__init__(train_bn)
        if len(epochs) != len(fractions) or not epochs:
            raise ValueError("milestones need as many fractions as epochs, at least one")
        if list(epochs) != sorted(set(epochs)):
            raise ValueError(f"milestone epochs must be strictly increasing, got {list(epochs)}")
        if any(not 0 <= f <= 1 for f in fractions):
            raise ValueError(f"milestone fractions must be in [0, 1], got {list(fractions)}")
        self.epochs = list(epochs)
        self.fractions = list(fractions)

    def fraction(self, epoch: int) -> float:
        reached = [f for e, f in zip(self.epochs, self.fractions, strict=True) if e <= epoch]
        return reached[-1] if reached else 0.0
