"""A batch whose images all failed to decode: a zero loss every rank can step on, no metrics."""

from __future__ import annotations

from datetime import timedelta

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from tiny_backbone import TinyCNN

from moths_framework.data.dataset import collate_skipping_broken
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.lightning import MothsClassifier

EMPTY_BATCH = (torch.empty(0), torch.empty(0, dtype=torch.long), 8)


def model() -> MothsClassifier:
    table = {"A a": ("x", "F", "A"), "B b": ("y", "G", "B")}
    hierarchy = LabelHierarchy(("species", "group", "family", "genus"), table)
    return MothsClassifier(TinyCNN(), hierarchy)


class Images(torch.utils.data.Dataset):
    """Random 16×16 images; the indices in ``broken`` failed to decode (``None``)."""

    def __init__(self, size: int = 16, broken: frozenset[int] = frozenset()) -> None:
        self.size, self.broken = size, broken

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        if i in self.broken:
            return None
        image = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(i))
        return image, torch.full((4,), i % 3)


def loader(dataset: Images, batch_size: int = 8) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, collate_fn=collate_skipping_broken
    )


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kwargs)  # fmt: skip


def test_an_all_broken_batch_gives_a_zero_loss_that_reaches_every_trainable_parameter():
    m = model()
    m.backbone.body[0].weight.requires_grad = False  # a frozen parameter stays without one
    loss = m.training_step(EMPTY_BATCH, 0)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad and loss.item() == 0
    loss.backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and not p.grad.any(), name
        else:
            assert p.grad is None, name
    assert all(c["accuracy"].update_count == 0 for c in m.metrics.values())


def test_an_all_broken_batch_changes_no_metric():
    m = model()
    good = trainer().validate(m, loader(Images()), verbose=False)[0]
    with_broken = Images(size=24, broken=frozenset(range(16, 24)))
    both = trainer().validate(m, loader(with_broken), verbose=False)[0]
    assert both.pop("val/skipped_images") == 8
    assert good.pop("val/skipped_images") == 0
    assert both == pytest.approx(good)


def test_a_fit_goes_on_through_all_broken_batches_and_counts_them():
    fit = trainer(max_epochs=1)
    data = Images(size=32, broken=frozenset(range(8, 16)))
    fit.fit(model(), train_dataloaders=loader(data), val_dataloaders=loader(data))
    assert fit.callback_metrics["train/skipped_images"] == 8
    assert fit.callback_metrics["val/skipped_images"] == 8  # not train's and val's together


@pytest.mark.slow
def test_ddp_with_one_rank_seeing_only_broken_images_finishes():
    # DistributedSampler deals indices round-robin: rank 1 gets the odd ones, all broken.
    data = Images(size=16, broken=frozenset(range(1, 16, 2)))
    strategy = DDPStrategy(start_method="spawn", process_group_backend="gloo",
                           timeout=timedelta(seconds=60))  # fmt: skip
    fit = trainer(max_epochs=1, accelerator="cpu", devices=2, strategy=strategy)
    fit.fit(model(), train_dataloaders=loader(data, 4), val_dataloaders=loader(data, 4))
    assert fit.state.finished
    assert fit.callback_metrics["train/skipped_images"] == 8  # summed over the ranks
    assert fit.callback_metrics["val/skipped_images"] == 8
