"""moths-fit and friends: config, overrides, run directory, checkpoint contents, errors."""

from __future__ import annotations

import time

import pytest
import torch
import yaml
from helpers.fit_args import tiny_fit_args
from helpers.paths import REPO

from moths_framework.cli.fit import main as fit
from moths_framework.cli.predict import main as predict
from moths_framework.cli.test import main as run_test
from moths_framework.cli.validate import main as validate
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.model.lightning import normalised_loss_weights
from moths_framework.model.rebuild import load_classifier

FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2"]  # fmt: skip


def printed_config(capsys, args: list[str]) -> dict:
    with pytest.raises(SystemExit) as exit_:
        fit([*args, "--print_config"])
    assert exit_.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_list_items_are_overridable_by_index(tmp_path, prepared, capsys):
    args = tiny_fit_args(tmp_path, prepared / "manifest.csv")
    args += ["--trainer.logger.0.init_args.name", "csv",
             "--model.loss_weights.0", "3.0"]  # fmt: skip
    config = printed_config(capsys, args)
    (logger,) = config["trainer"]["logger"]
    assert logger["init_args"]["name"] == "csv" and logger["class_path"].endswith("CSVLogger")
    assert config["model"]["loss_weights"] == [3.0, 1.0, 1.0, 1.0]


def test_dev_config_takes_size_mean_and_std_from_the_model_only(capsys):
    """One source of truth: the transforms are built from model.preprocessing."""
    with pytest.raises(SystemExit):
        fit(["--config", str(REPO / "configs" / "dev.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["train_transforms"] is None
    assert config["data"]["test_transforms"] is None
    assert config["model"]["preprocessing"]["input_size"] == [64, 64]


def test_a_normalize_that_disagrees_with_the_model_is_one_line(tmp_path, prepared, capsys):
    transforms = '[{"class_path": "torchvision.transforms.v2.Normalize", ' \
        '"init_args": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}]'  # fmt: skip
    args = tiny_fit_args(tmp_path, prepared / "manifest.csv", *FAST)
    assert fit([*args, "--data.test_transforms", transforms]) == 2
    err = capsys.readouterr().err
    assert "data.test_transforms: Normalize(mean=[0.5, 0.5, 0.5]" in err
    assert "model.preprocessing (mean=[0.485" in err and "Traceback" not in err


def test_print_config_round_trips(tmp_path, prepared, capsys):
    first = printed_config(capsys, tiny_fit_args(tmp_path, prepared / "manifest.csv"))
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(first))
    assert printed_config(capsys, ["--config", str(saved)]) == first


def test_a_run_writes_config_checkpoints_and_metrics(tmp_path, prepared, capsys):
    run = tmp_path / "run"
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST)) == 0
    out = capsys.readouterr().out
    assert f"best checkpoint: {run / 'best.ckpt'}" in out
    assert {"best.ckpt", "last.ckpt", "config.yaml"} <= {p.name for p in run.iterdir()}
    for name in [
        "val/loss",
        "val/species/accuracy",
        "val/species/top5_accuracy",
        "val/genus/f1_macro",
        "val/family/precision_macro",
        "val/group/recall_macro",
    ]:
        assert name in out, name  # fmt: skip
    checkpoint = torch.load(run / "best.ckpt", weights_only=False, map_location="cpu")
    meta = checkpoint["moths"]
    hierarchy = LabelHierarchy.from_json(meta["hierarchy"])
    assert hierarchy.bundled == ("Biston betularia", "Zygaena exulans")
    assert meta["backbone"]["class_path"] == "tiny_backbone.TinyCNN"
    assert meta["data"]["split"]["val"] > 0 and meta["metrics"]["val/loss"] > 0
    model = load_classifier(run / "best.ckpt")  # nothing but the checkpoint
    assert model(torch.zeros(2, 3, 32, 32))[0].shape == (2, len(hierarchy.classes("species")))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["backbone"]["class_path"] == "tiny_backbone.TinyCNN"
    assert saved["trainer"]["default_root_dir"] == str(run)


def test_validate_and_test_evaluate_a_checkpoint(tmp_path, prepared, capsys):
    run = tmp_path / "run"
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST)) == 0
    for command in (validate, run_test):
        args = tiny_fit_args(run, prepared / "manifest.csv", *FAST)
        assert command([*args, "--ckpt_path", str(run / "best.ckpt")]) == 0
    out = capsys.readouterr().out
    assert "test/species/accuracy" in out and "val/species/accuracy" in out


@pytest.mark.parametrize("command", [validate, run_test, predict])
def test_every_command_accepts_the_config_a_run_saved(tiny_run, tmp_path, capsys, caplog, command):
    """The README's evaluate commands: --config RUN/config.yaml (it holds ``tune``)."""
    saved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert saved["tune"] is False
    args = ["--config", str(tiny_run / "config.yaml"), "--ckpt_path", str(tiny_run / "best.ckpt")]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    if command is predict:
        args += ["--output", str(tmp_path / "predictions")]
    assert command(args) == 0, capsys.readouterr().err
    assert "Tip" not in caplog.text  # Lightning's adverts for its cloud services are dropped


def test_loss_weights_are_normalised_to_the_number_of_ranks():
    w = normalised_loss_weights([2, 1, 1, 0], 4)
    assert w.sum().item() == pytest.approx(4.0)
    assert w.tolist() == pytest.approx([2.0, 1.0, 1.0, 0.0])
    assert normalised_loss_weights(None, 3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="4 non-negative"):
        normalised_loss_weights([1, 1], 4)


def test_the_loss_is_the_weighted_mean_of_rank_losses(tmp_path, prepared):
    from tiny_backbone import TinyCNN

    from moths_framework.model.lightning import MothsClassifier

    table = {"A a": ("x", "F", "A"), "B b": ("y", "G", "B")}
    h = LabelHierarchy(("species", "group", "family", "genus"), table)
    model = MothsClassifier(TinyCNN(), h, loss_weights=[1, 0, 0, 3])
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([[1, 1, 1, 1], [2, 2, 2, 2]] * 2)
    per_rank = model.rank_losses(model(x), y)
    loss = model.training_step((x, y, 0), 0)
    assert loss.item() == pytest.approx(((per_rank[0] * 1 + per_rank[3] * 3) / 4).item(), rel=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--data.source.init_args.path", "/nonexistent/manifest.csv"],
         "manifest /nonexistent/manifest.csv not found"),
        (["--data.hierarchy.init_args.path", "/nonexistent.csv"], "/nonexistent.csv"),
        (["--model.backbone", "NoSuchBackbone"], "NoSuchBackbone"),
        (["--model.backbone", "TimmBackbone", "--model.backbone.name", "resnet181"],
         "did you mean"),
        (["--unfreeze", "moths_framework.train.unfreeze.Nope"], "Nope"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_problem(tmp_path, prepared, capsys, override, message):
    args = tiny_fit_args(tmp_path, prepared / "manifest.csv", *FAST, *override)
    try:
        code = fit(args)
    except SystemExit as exit_:  # jsonargparse reports parse errors and exits
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "backbone"), [("dev", "TimmBackbone"), ("default", "TorchvisionBackbone")]
)
def test_shipped_configs_parse(capsys, name, backbone):
    with pytest.raises(SystemExit) as exit_:
        fit(["--config", str(REPO / "configs" / f"{name}.yaml"), "--print_config"])
    assert exit_.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["backbone"]["class_path"].endswith(backbone)


def test_tune_sizes_the_batch_for_the_most_the_policy_unfreezes_and_saves_it(
    tmp_path, prepared, monkeypatch, capsys
):
    """GradualUnfreeze reaches 0.6 of the backbone in epoch 1 of 2: the batch-size search
    must see that much trainable, and config.yaml must reproduce the tuned run."""
    from types import SimpleNamespace

    from lightning.pytorch.tuner import Tuner

    from moths_framework.train.unfreeze import UnfreezePolicy

    seen = {}

    def fake_scale_batch_size(tuner, model, datamodule, **kwargs):
        (policy,) = [c for c in tuner._trainer.callbacks if isinstance(c, UnfreezePolicy)]
        seen["fractions"] = [policy.fraction(epoch) for epoch in range(2)]
        datamodule.batch_size = 24
        return 24

    def fake_lr_find(tuner, model, **kwargs):
        seen["fraction during lr_find"] = [
            c.fraction(0) for c in tuner._trainer.callbacks if isinstance(c, UnfreezePolicy)
        ]
        model.lr = 0.0123
        return SimpleNamespace(suggestion=lambda: 0.0123)

    monkeypatch.setattr(Tuner, "scale_batch_size", fake_scale_batch_size)
    monkeypatch.setattr(Tuner, "lr_find", fake_lr_find)
    run = tmp_path / "run"
    policy = ["--unfreeze", "GradualUnfreeze", "--unfreeze.epoch_start", "1",
              "--unfreeze.epoch_duration", "0", "--unfreeze.final_fraction", "0.6"]  # fmt: skip
    fast = [*FAST, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "1"]
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *fast, *policy, "--tune", "true")) == 0
    assert seen["fractions"] == [0.6, 0.6]
    assert seen["fraction during lr_find"] == [0.0]  # the policy is itself again
    assert "tune: batch size 24" in capsys.readouterr().out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["batch_size"] == 24 and saved["model"]["lr"] == 0.0123
    assert saved["tune"] is False


def test_tune_without_an_lr_suggestion_keeps_the_configured_learning_rate(
    tmp_path, prepared, monkeypatch, capsys
):
    """The one path where the LR finder gives no suggestion (too few points): the run
    trains with the optimizer's lr from the config, and config.yaml leaves model.lr unset."""
    from types import SimpleNamespace

    from lightning.pytorch.tuner import Tuner

    monkeypatch.setattr(Tuner, "scale_batch_size", lambda tuner, model, datamodule, **kw: 16)
    monkeypatch.setattr(Tuner, "lr_find", lambda *a, **kw: SimpleNamespace(suggestion=lambda: None))
    run = tmp_path / "run"
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST, "--tune", "true")) == 0
    assert "learning rate None" in capsys.readouterr().out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    configured = saved["model"]["optimizer"]["init_args"]["lr"]
    assert saved["model"]["lr"] is None and configured == 0.003  # configs/dev.yaml's
    groups = torch.load(run / "last.ckpt", weights_only=False)["optimizer_states"][0]
    assert [g["initial_lr"] for g in groups["param_groups"]] == [configured, configured]


def test_two_fits_started_in_the_same_second_get_their_own_run_folders(
    tmp_path, prepared, monkeypatch
):
    from moths_framework import plugins
    from moths_framework.train.cli import MothsCLI

    monkeypatch.chdir(tmp_path)
    strftime = time.strftime
    same_second = "20250101-120000"
    monkeypatch.setattr(
        time, "strftime", lambda f, *t: same_second if f == "%Y%m%d-%H%M%S" else strftime(f, *t)
    )
    args = tiny_fit_args(tmp_path / "unused", prepared / "manifest.csv")
    at = args.index("--trainer.default_root_dir")
    del args[at : at + 2]  # the default: runs/<time> in the working directory
    plugins.load_all()
    first, second = (MothsCLI("fit", args).trainer.default_root_dir for _ in range(2))
    assert first == f"runs/{same_second}" and second == f"runs/{same_second}-2"
    assert (tmp_path / first).is_dir() and (tmp_path / second).is_dir()


def test_fit_refuses_a_folder_it_did_not_make(tmp_path, prepared, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own config\n")
    assert fit(tiny_fit_args(mine, prepared / "manifest.csv", *FAST)) == 2
    err = capsys.readouterr().err
    assert err.startswith("moths-fit: error: ") and err.count("\n") == 1 and str(mine) in err
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml"]
    assert (mine / "config.yaml").read_text() == "my own config\n"
