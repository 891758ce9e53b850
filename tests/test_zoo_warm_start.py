"""Warm start (``model.init_from``): backbone and head rows carried over by class name."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from helpers.fit_args import FAST_FIT, tiny_fit_args
from tiny_backbone import TinyCNN

from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.checkpoint import read_safetensors, read_weights, write_safetensors
from moths_framework.model.lightning import MothsClassifier
from moths_framework.model.rebuild import load_classifier
from moths_framework.model.warm_start import WarmStartError

NEW = "Aaa novus"  # sorts first: every old species moves one row down


@pytest.fixture(scope="module")
def source(tiny_run) -> tuple[Path, MothsClassifier]:
    best = tiny_run / "best.ckpt"
    return best, load_classifier(best)


def _warm(source_model: MothsClassifier, init_from: str, hierarchy=None) -> MothsClassifier:
    torch.manual_seed(123)  # fresh rows differ from the source's
    return MothsClassifier(
        backbone=TinyCNN(),
        hierarchy=hierarchy or source_model.hierarchy,
        preprocessing=source_model.preprocessing,
        init_from=init_from,
    ).eval()


def _batch(model: MothsClassifier) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(6, 3, 32, 32, generator=generator)
    counts = list(model.hierarchy.num_classes().values())
    targets = torch.stack([torch.randint(n, (6,), generator=generator) for n in counts], dim=1)
    return images, targets


def test_same_hierarchy_gives_the_source_models_loss(source, caplog):
    best, source_model = source
    with caplog.at_level(logging.INFO, logger="moths_framework.model.warm_start"):
        warm = _warm(source_model, str(best))
    images, targets = _batch(source_model)
    with torch.no_grad():
        expected = source_model.rank_losses(source_model(images), targets)
        got = warm.rank_losses(warm(images), targets)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    total = sum(source_model.hierarchy.num_classes().values())
    assert f"backbone and {total} of {total} classes carried over" in caplog.text


def test_a_new_species_starts_fresh_and_the_others_are_carried(source, caplog):
    best, source_model = source
    old = source_model.hierarchy
    ancestors = {
        s: [old.ancestors(s)[r] for r in old.ranks[1:]] for s in old.classes("species")[1:]
    }
    ancestors[NEW] = ancestors[old.classes("species")[1]]  # same genus etc. as a known one
    grown = LabelHierarchy(old.ranks, ancestors)
    with caplog.at_level(logging.INFO, logger="moths_framework.model.warm_start"):
        warm = _warm(source_model, str(best), grown)
    torch.manual_seed(123)
    fresh = MothsClassifier(
        backbone=TinyCNN(),
        hierarchy=grown,
        preprocessing=source_model.preprocessing,
    )
    w_new, w_old = warm.net.heads["species"].weight, source_model.net.heads["species"].weight
    new_row = grown.index("species", NEW)
    torch.testing.assert_close(w_new[new_row], fresh.net.heads["species"].weight[new_row])
    assert not torch.equal(w_new[new_row], w_old[old.index("species", old.classes("species")[1])])
    for name in old.classes("species"):
        torch.testing.assert_close(
            w_new[grown.index("species", name)], w_old[old.index("species", name)]
        )
    for rank in old.ranks[1:]:  # the other ranks did not change at all
        torch.testing.assert_close(warm.net.heads[rank].weight, source_model.net.heads[rank].weight)
    for (name, a), b in zip(
        warm.backbone.state_dict().items(), source_model.backbone.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    n = len(old.classes("species"))
    assert f"(species {n}/{n + 1}, " in caplog.text


def test_a_safetensors_zoo_checkpoint_loads_the_same_and_runs_no_pickle(source, tmp_path):
    best, source_model = source
    state_dict, written = read_weights(best)
    path = write_safetensors(state_dict, written, tmp_path / "m.safetensors")
    assert path.read_bytes()[:8] != b"PK\x03\x04" and b"__reduce__" not in path.read_bytes()
    tensors, meta = read_safetensors(path)
    assert meta.hierarchy == written.hierarchy and written.val_examples
    assert meta.val_examples == [] and "val_examples" not in meta.to_dict()["data"]
    warm = _warm(source_model, str(path))
    images, _ = _batch(source_model)
    with torch.no_grad():
        for a, b in zip(warm(images), source_model(images), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_unfit_backbone_or_missing_source_is_one_clear_error(source, tmp_path):
    best, source_model = source
    with pytest.raises(WarmStartError, match="backbone does not fit.*same model.backbone"):
        MothsClassifier(
            backbone=TinyCNN(width=4), hierarchy=source_model.hierarchy, init_from=str(best)
        )
    with pytest.raises(WarmStartError, match="init_from: checkpoint .*nothing.ckpt not found"):
        MothsClassifier(
            backbone=TinyCNN(),
            hierarchy=source_model.hierarchy,
            init_from=str(tmp_path / "nothing.ckpt"),
        )
    with pytest.raises(WarmStartError, match="no model 'nope'"):
        MothsClassifier(backbone=TinyCNN(), hierarchy=source_model.hierarchy, init_from="zoo:nope")


def test_moths_fit_warm_starts_from_the_zoo_demo_model(prepared, tmp_path, monkeypatch, caplog):
    from moths_framework.cli.fit import main as fit

    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MOTHS_OFFLINE", "1")
    args = tiny_fit_args(tmp_path / "run", prepared / "manifest.csv", *FAST_FIT)
    args += [
        "--model.backbone",
        "TimmBackbone",
        "--model.backbone.init_args.name",
        "test_efficientnet",
    ]
    args += [
        "--model.preprocessing.input_size",
        "[64, 64]",
        "--model.init_from",
        "zoo:nl-moths-demo",
    ]
    with caplog.at_level(logging.INFO):
        assert fit(args) == 0
    assert (
        "warm start from zoo:nl-moths-demo: backbone and 23 of 23 classes carried over"
        in caplog.text
    )
    shutil.rmtree(tmp_path / "run")


def test_moths_fit_with_an_unknown_init_from_is_one_line_exit_2(prepared, tmp_path, capsys):
    from moths_framework.cli.fit import main as fit

    args = tiny_fit_args(tmp_path / "run", prepared / "manifest.csv", *FAST_FIT)
    assert fit([*args, "--model.init_from", "zoo:nl-moth-demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("moths-fit: error: init_from: no model 'nl-moth-demo'")
    assert "did you mean nl-moths-demo" in err[-1]
