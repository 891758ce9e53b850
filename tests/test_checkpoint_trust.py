"""A checkpoint runs none of its author's code unless ``--trust-checkpoint``.

``.ckpt`` files are read with ``torch.load(weights_only=True)`` by every command
that reads one, and a checkpoint's backbone ``class_path`` must name a backbone
plugin or a ``Backbone`` subclass.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers.fit_args import FAST_FIT, tiny_fit_args
from helpers.paths import REPO

from moths_framework.cli import calibrate as calibrate_cli
from moths_framework.cli import export as export_cli
from moths_framework.cli import fit as fit_cli
from moths_framework.cli import predict as predict_cli
from moths_framework.cli import validate as validate_cli
from moths_framework.cli import zoo as zoo_cli
from moths_framework.model.checkpoint import CHECKPOINT_KEY, CheckpointError, read_checkpoint
from moths_framework.model.rebuild import classifier_from_checkpoint, load_classifier

DEMO_ONNX = REPO / "zoo" / "nl-moths-demo" / "1.0.0" / "model.onnx"


class _Plant:
    """Unpickling it creates a file: what a stranger's checkpoint could do instead."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(autouse=True)
def no_trust(monkeypatch):
    monkeypatch.delenv("MOTHS_TRUST_CHECKPOINT", raising=False)


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code-ran"


@pytest.fixture
def planted(run, marker) -> Path:
    """The run's best.ckpt with a pickled object whose loading creates ``marker``."""
    checkpoint = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)
    checkpoint["extra"] = _Plant(marker)
    torch.save(checkpoint, run / "best.ckpt")
    return run / "best.ckpt"


def _entry_points(run: Path, ckpt: Path, tmp_path: Path, prepared: Path) -> dict[str, Callable]:
    """Each command that reads a checkpoint, as a call taking extra arguments."""
    config, ckpt_ = str(run / "config.yaml"), str(ckpt)
    add = ["add", str(DEMO_ONNX), "--checkpoint", ckpt_, "--id", "x", "--version", "1"]
    warm = tiny_fit_args(tmp_path / "warm", prepared / "manifest.csv", *FAST_FIT)
    return {
        "export": lambda *t: export_cli.main(
            ["--onnx", "--ckpt", ckpt_, "--output", str(tmp_path / "m.onnx"), *t]
        ),
        "calibrate": lambda *t: calibrate_cli.main(
            ["--ckpt", ckpt_, "--output", str(tmp_path / "cal.ckpt"), *t]
        ),
        "predict": lambda *t: predict_cli.main(
            ["--config", config, "--ckpt_path", ckpt_, "--output", str(tmp_path / "p"), *t]
        ),
        "validate": lambda *t: validate_cli.main(["--config", config, "--ckpt_path", ckpt_, *t]),
        "zoo add": lambda *t: zoo_cli.main([*add, "--index", str(tmp_path / "zoo"), *t]),
        "fit init_from": lambda *t: fit_cli.main([*warm, "--model.init_from", ckpt_, *t]),
    }


COMMANDS = ["export", "calibrate", "predict", "validate", "zoo add", "fit init_from"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_pickled_object_is_refused_by_every_command(
    command, planted, run, marker, tmp_path, prepared, capsys
):
    capsys.readouterr()
    assert _entry_points(run, planted, tmp_path, prepared)[command]() == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert "--trust-checkpoint" in err and "io.open" in err
    assert not marker.exists()


def test_read_checkpoint_refuses_and_trusting_loads(planted, marker, monkeypatch):
    from moths_framework.model.trust import trusting_checkpoints

    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_checkpoint(planted)
    assert not marker.exists()
    with trusting_checkpoints():
        assert CHECKPOINT_KEY in read_checkpoint(planted)
    assert marker.exists()
    marker.unlink()
    monkeypatch.setenv("MOTHS_TRUST_CHECKPOINT", "1")
    assert CHECKPOINT_KEY in read_checkpoint(planted)
    assert marker.exists()


@pytest.mark.parametrize("command", ["export", "predict"])
def test_trust_checkpoint_loads_it(command, planted, run, marker, tmp_path, prepared):
    assert _entry_points(run, planted, tmp_path, prepared)[command]("--trust-checkpoint") == 0
    assert marker.exists()


@pytest.mark.parametrize(
    "spec",
    [
        lambda m: {"class_path": "os.system", "init_args": {"command": f"touch {shlex.quote(m)}"}},
        lambda m: {"class_path": "subprocess.Popen", "init_args": {"args": ["touch", m]}},
    ],
)
def test_a_backbone_class_path_that_is_no_backbone_is_refused(spec, run, marker, tmp_path, capsys):
    checkpoint = read_checkpoint(run / "best.ckpt")
    checkpoint[CHECKPOINT_KEY]["backbone"] = spec(str(marker))
    with pytest.raises(CheckpointError, match="is not a backbone.*--trust-checkpoint"):
        classifier_from_checkpoint(checkpoint)
    torch.save(checkpoint, run / "best.ckpt")
    out = tmp_path / "m.onnx"
    assert export_cli.main(["--onnx", "--ckpt", str(run / "best.ckpt"), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and spec(str(marker))["class_path"] in err
    time.sleep(0.2)  # a child process would have had time to run
    assert not marker.exists()


def test_a_moths_fit_checkpoint_needs_no_trust(tiny_run):
    """The project's own checkpoints hold nothing beyond torch's default weights_only allow-list,
    and the test backbone (a Backbone subclass, not a registered plugin) rebuilds untrusted."""
    for name in ("best.ckpt", "last.ckpt"):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(tiny_run / name) == []
    assert load_classifier(tiny_run / "best.ckpt").backbone.__class__.__name__ == "TinyCNN"
