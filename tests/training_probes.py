"""Callbacks that record what happens inside a training run, for tests (used by class_path)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


class SaveInitialState(pl.Callback):
    """Saves the model's state dict to ``path`` when training starts (rank 0 only)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            torch.save(state, self.path)
