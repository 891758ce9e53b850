"""``moths-fit --tune``: batch-size scaling sized for what will train, then the LR finder.

The batch size is searched with the backbone as far unfrozen as the run's
unfreeze policy ever gets: a batch that fits while the backbone is frozen
can run out of GPU memory once it thaws (gradients and optimizer state of
every unfrozen parameter). The learning rate is then searched as the run
starts, with the policy's own epoch-0 trainable set.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import lightning.pytorch as pl

from moths_framework.train.unfreeze import UnfreezePolicy

__all__ = [
    "TuneResult",
    "epochs_unbounded",
    "largest_fraction",
    "policy_held_at_largest_fraction",
    "tune",
]

# Epochs looked at when a run has no max_epochs (Lightning then stops at 1000).
_UNBOUNDED_EPOCHS = 1000


@dataclass(frozen=True)
class TuneResult:
    """What ``--tune`` found (``lr`` is None when the finder gave no suggestion)."""

    batch_size: int
    lr: float | None
    fraction: float


def largest_fraction(policy: UnfreezePolicy, max_epochs: int | None) -> float:
    """The largest backbone fraction ``policy`` unfreezes over epochs ``0 .. max_epochs-1``."""
    epochs = max_epochs if max_epochs is not None and max_epochs > 0 else _UNBOUNDED_EPOCHS
    return max(min(max(float(policy.fraction(e)), 0.0), 1.0) for e in range(epochs))


@contextmanager
def policy_held_at_largest_fraction(trainer: pl.Trainer) -> Iterator[float]:
    """Within the block, every unfreeze policy of ``trainer`` unfreezes its largest fraction
    at every epoch; yields that fraction (0.0 without a policy)."""
    policies = [c for c in trainer.callbacks if isinstance(c, UnfreezePolicy)]
    largest = 0.0
    for policy in policies:
        fraction = largest_fraction(policy, trainer.max_epochs)
        largest = max(largest, fraction)
        policy.fraction = lambda epoch, f=fraction: f  # shadows the method on this instance
    try:
        yield largest
    finally:
        for policy in policies:
            del policy.fraction


@contextmanager
def epochs_unbounded(trainer: pl.Trainer) -> Iterator[None]:
    """Within the block, ``trainer`` has no epoch limit and validates at no epoch's end.

    Lightning's LR finder runs its steps as a fit that still stops at the run's
    ``max_epochs`` (Lightning-AI/pytorch-lightning#16561, closed as won't fix): once the
    batch size has grown to cover a small data set there is one batch per epoch, the
    finder stops after ``max_epochs`` steps and has too few points for a suggestion. The
    finder reads training losses only, so the validation each short epoch would end with
    is skipped.
    """
    loop, every = trainer.fit_loop, trainer.check_val_every_n_epoch
    max_epochs = loop.max_epochs
    loop.max_epochs = -1  # Lightning's "no limit"
    trainer.check_val_every_n_epoch = sys.maxsize
    try:
        yield
    finally:
        loop.max_epochs = max_epochs
        trainer.check_val_every_n_epoch = every


def tune(
    trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule
) -> TuneResult:
    """Scale ``datamodule.batch_size`` (power mode) and set ``model.lr`` from the LR finder."""
    from lightning.pytorch.tuner import Tuner

    tuner = Tuner(trainer)
    with policy_held_at_largest_fraction(trainer) as fraction:
        size = tuner.scale_batch_size(model, datamodule=datamodule, mode="power")
    with epochs_unbounded(trainer):
        finder = tuner.lr_find(model, datamodule=datamodule, attr_name="lr")
    lr = finder.suggestion() if finder is not None else None
    if lr is not None:
        model.lr = lr
    return TuneResult(int(size or datamodule.batch_size), lr, fraction)
