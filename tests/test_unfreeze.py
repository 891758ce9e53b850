"""Unfreeze policies: the trainable set per epoch, real training of unfrozen layers, resume."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from helpers.fit_args import tiny_fit_args
from tiny_backbone import TinyCNN
from torch import nn

from moths_framework.cli.fit import main as fit
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.lightning import MothsClassifier
from moths_framework.train.unfreeze import (
    FrozenBackbone,
    FullUnfreeze,
    GradualUnfreeze,
    MilestoneUnfreeze,
    trainable_parameters,
)


def test_gradual_follows_the_seed_formula():
    policy = GradualUnfreeze(epoch_start=3, epoch_duration=4, final_fraction=0.8)
    for epoch in range(12):
        expected = np.interp(epoch, [2, 7], [0, 0.8])
        assert policy.fraction(epoch) == pytest.approx(expected)
    assert policy.fraction(2) == 0 and policy.fraction(7) == pytest.approx(0.8)


def test_other_policies():
    assert [FrozenBackbone().fraction(e) for e in range(3)] == [0, 0, 0]
    assert [FullUnfreeze().fraction(e) for e in range(3)] == [1, 1, 1]
    steps = MilestoneUnfreeze(epochs=[2, 5], fractions=[0.25, 1.0])
    assert [steps.fraction(e) for e in range(7)] == [0, 0, 0.25, 0.25, 0.25, 1.0, 1.0]
    with pytest.raises(ValueError, match="increasing"):
        MilestoneUnfreeze(epochs=[5, 2], fractions=[0.1, 0.2])
    with pytest.raises(ValueError, match="final_fraction"):
        GradualUnfreeze(final_fraction=1.5)


def test_trainable_parameters_count_from_the_output_end():
    backbone = TinyCNN()
    ordered = [p for _, p in backbone.ordered_parameters()]
    assert trainable_parameters(backbone, 0.0) == []
    assert trainable_parameters(backbone, 1.0) == ordered
    half = trainable_parameters(backbone, 0.5)
    assert half == ordered[len(ordered) - len(ordered) // 2 :]
    assert half[-1] is ordered[-1]


def model() -> MothsClassifier:
    table = {"A a": ("x", "F", "A"), "B b": ("y", "G", "B")}
    hierarchy = LabelHierarchy(("species", "group", "family", "genus"), table)
    return MothsClassifier(TinyCNN(), hierarchy, backbone_lr_ratio=0.1)


def test_backbone_group_runs_at_the_lr_ratio():
    optimizer = model().configure_optimizers()
    heads, backbone = optimizer.param_groups
    assert backbone["lr"] == pytest.approx(heads["lr"] * 0.1)
    assert len(backbone["params"]) == len(list(TinyCNN().parameters()))


class Batches(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randn(3, 16, 16, generator=g), torch.tensor([i % 3, i % 3, i % 3, i % 3])


def loader():
    def collate(items):
        x, y = torch.utils.data.default_collate(items)
        return x, y, 0

    return torch.utils.data.DataLoader(Batches(), batch_size=8, collate_fn=collate)


def fit_tiny(m: MothsClassifier, policy, epochs: int = 1) -> None:
    """A short fit with validation after every epoch (it switches modes back and forth)."""
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[policy], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=1)  # fmt: skip
    trainer.fit(m, train_dataloaders=loader(), val_dataloaders=loader())


def backbone_state(m: MothsClassifier) -> dict[str, torch.Tensor]:
    """Parameters and buffers (BatchNorm running_mean/var, num_batches_tracked)."""
    return {n: t.detach().clone() for n, t in m.backbone.state_dict().items()}


def changed_entries(before: dict[str, torch.Tensor], m: MothsClassifier) -> set[str]:
    after = m.backbone.state_dict()
    return {n for n, t in before.items() if not torch.equal(t, after[n])}


def test_frozen_backbone_keeps_batchnorm_statistics():
    m = model()
    before = backbone_state(m)
    assert any(n.endswith("running_mean") for n in before)  # TinyCNN has a BatchNorm
    fit_tiny(m, FrozenBackbone(), epochs=2)
    assert changed_entries(before, m) == set()


def test_train_bn_lets_frozen_statistics_follow_the_data():
    m = model()
    before = backbone_state(m)
    fit_tiny(m, FrozenBackbone(train_bn=True))
    stats = {n for n in before if "running" in n or "num_batches" in n}
    assert changed_entries(before, m) == stats


def test_gradual_unfreeze_keeps_the_frozen_part_exactly():
    m = model()
    before = backbone_state(m)
    policy = GradualUnfreeze(epoch_start=1, epoch_duration=1, final_fraction=0.5)
    fit_tiny(m, policy, epochs=3)
    trainable = {id(p) for p in trainable_parameters(m.backbone, 0.5)}
    names = {id(p): n for n, p in m.backbone.named_parameters()}
    # TinyCNN: conv, BatchNorm, conv, conv; the last half is the two last convs.
    assert {names[i] for i in trainable} == {
        f"body.{k}.{w}" for k in (3, 5) for w in ("weight", "bias")
    }
    assert changed_entries(before, m) == {names[i] for i in trainable}


def test_a_trainable_batchnorm_keeps_learning_its_statistics():
    m = model()
    before = backbone_state(m)
    fit_tiny(m, MilestoneUnfreeze(epochs=[0], fractions=[0.75]))
    changed = changed_entries(before, m)
    assert {"body.1.weight", "body.1.running_mean", "body.1.num_batches_tracked"} <= changed
    assert "body.0.weight" not in changed


def test_frozen_part_runs_in_eval_mode_dropout_included():
    m = model()
    m.backbone.body.insert(3, nn.Dropout(0.5))  # after the first block's ReLU
    policy = FrozenBackbone()
    policy.apply(m, 0)
    policy.set_modes(m)
    assert not any(x.training for x in m.backbone.modules())
    policy = MilestoneUnfreeze(epochs=[0], fractions=[0.5])
    policy.apply(m, 0)
    policy.set_modes(m)
    body = m.backbone.body
    assert [body[i].training for i in (0, 1, 4, 6)] == [False, False, True, True]
    assert body[3].training  # a dropout follows its block: the partly trainable body
    policy = MilestoneUnfreeze(epochs=[0], fractions=[0.0], train_bn=True)
    policy.apply(m, 0)
    policy.set_modes(m)
    assert [body[i].training for i in (0, 1, 3)] == [False, True, False]


class ModeProbe(pl.Callback):
    """Training mode of the first BatchNorm at every training step, after all hooks ran."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.modes.append(pl_module.backbone.body[1].training)


def test_frozen_batchnorm_is_in_eval_mode_at_every_step():
    m, probe = model(), ModeProbe()
    trainer = pl.Trainer(max_epochs=2, callbacks=[FrozenBackbone(), probe], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(m, train_dataloaders=loader(), val_dataloaders=loader())
    assert probe.modes == [False] * 4


def test_only_unfrozen_parameters_change():
    m = model()
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    policy = MilestoneUnfreeze(epochs=[0], fractions=[0.5])
    trainer = pl.Trainer(max_epochs=1, callbacks=[policy], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(m, train_dataloaders=loader())
    trainable = {id(p) for p in trainable_parameters(m.backbone, 0.5)}
    for name, p in m.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if name.startswith("net.backbone."):
            assert changed == (id(p) in trainable), name
        else:
            assert changed, name  # the heads always train


class RecordTrainable(pl.Callback):
    """Which backbone parameters require gradients at each epoch's start (after the policy)."""

    def __init__(self) -> None:
        self.seen: dict[int, list[bool]] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        flags = [p.requires_grad for p in pl_module.backbone.parameters()]
        self.seen[trainer.current_epoch] = flags


@pytest.mark.slow
def test_resume_restores_the_frozen_set_of_its_epoch(tmp_path, prepared, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    recorder = RecordTrainable()
    monkeypatch.setattr(pl.Trainer, "__init__", _with_callback(pl.Trainer.__init__, recorder))
    policy = ["--unfreeze", "GradualUnfreeze", "--unfreeze.epoch_start", "1",
              "--unfreeze.epoch_duration", "2", "--unfreeze.final_fraction", "1.0",
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]  # fmt: skip
    manifest = prepared / "manifest.csv"
    assert (
        fit(tiny_fit_args(tmp_path / "full", manifest, *policy, "--trainer.max_epochs", "4")) == 0
    )
    straight = dict(recorder.seen)
    recorder.seen.clear()
    first = tiny_fit_args(tmp_path / "part", manifest, *policy, "--trainer.max_epochs", "2")
    assert fit(first) == 0
    resumed = tiny_fit_args(tmp_path / "part", manifest, *policy, "--trainer.max_epochs", "4",
                            "--ckpt_path", str(tmp_path / "part" / "last.ckpt"))  # fmt: skip
    assert fit(resumed) == 0
    assert sorted(recorder.seen) == [0, 1, 2, 3]
    assert recorder.seen == straight
    assert sum(straight[1]) < sum(straight[2]) < len(straight[2])


def _with_callback(init, callback):
    @functools.wraps(init)  # keeps the signature LightningCLI reads
    def patched(self, *args, callbacks=None, **kwargs):
        return init(self, *args, callbacks=[*(callbacks or []), callback], **kwargs)

    return patched
