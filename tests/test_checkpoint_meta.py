"""One checkpoint module: ``read_weights`` reads a ``.ckpt``, a ``.safetensors`` zoo
checkpoint or ``zoo:ID`` into ``(state_dict, CheckpointMeta)``, and the typed
metadata writes back exactly what ``moths-fit`` stored."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from moths_framework.cli import export as export_cli
from moths_framework.cli import zoo as zoo_cli
from moths_framework.model.checkpoint import (
    CHECKPOINT_KEY,
    CheckpointError,
    CheckpointMeta,
    read_checkpoint,
    read_weights,
    write_safetensors,
)

MODEL_ID = "tiny-test"


def test_the_meta_writes_back_exactly_what_moths_fit_wrote(tiny_run):
    stored = read_checkpoint(tiny_run / "best.ckpt")[CHECKPOINT_KEY]
    meta = CheckpointMeta.from_dict(stored)
    assert meta.to_dict() == stored
    assert meta.hierarchy.ranks == ("species", "group", "family", "genus")
    assert meta.backbone["class_path"] == "tiny_backbone.TinyCNN"
    assert meta.val_examples and not meta.calibrated
    assert "val/loss" in meta.metrics


def test_calibration_and_unknown_keys_survive_a_round_trip(tiny_run):
    stored = read_checkpoint(tiny_run / "best.ckpt")[CHECKPOINT_KEY]
    calibrated = replace(
        CheckpointMeta.from_dict({**stored, "from_a_newer_version": [1, 2]}),
        temperature={"species": 1.7},
        thresholds={"species": 0.4},
        calibration={"tau": {"power": 0.5}, "thresholds": {"species": 0.4}},
    )
    written = calibrated.to_dict()
    assert written["from_a_newer_version"] == [1, 2] and written["novelty"] is None
    assert CheckpointMeta.from_dict(written) == calibrated
    assert calibrated.tau_power == 0.5
    metadata = calibrated.model_metadata(precision="fp16")
    assert metadata.temperature["species"] == 1.7 and metadata.temperature["genus"] == 1.0
    assert metadata.calibrated_thresholds == {"species": 0.4} and metadata.precision == "fp16"


@pytest.fixture(scope="module")
def zoo_index(tiny_run, tmp_path_factory) -> Path:
    """tiny_run's best.ckpt exported and added to a new zoo index, as a user would."""
    folder = tmp_path_factory.mktemp("zoo")
    onnx_path = folder / "tiny.onnx"
    ckpt = str(tiny_run / "best.ckpt")
    assert export_cli.main(["--onnx", "--ckpt", ckpt, "--output", str(onnx_path)]) == 0
    index = folder / "index"
    args = ["add", str(onnx_path), "--index", str(index), "--id", MODEL_ID, "--version", "1"]
    assert zoo_cli.main([*args, "--checkpoint", ckpt]) == 0
    return index


def test_a_zoo_id_and_its_ckpt_give_the_same_model(tiny_run, zoo_index, tmp_path, monkeypatch):
    monkeypatch.setenv("MOTHS_ZOO_INDEX", str(zoo_index))
    monkeypatch.setenv("MOTHS_CACHE", str(tmp_path / "cache"))
    ckpt_state, ckpt_meta = read_weights(tiny_run / "best.ckpt")
    zoo_state, zoo_meta = read_weights(f"zoo:{MODEL_ID}")
    # the zoo copy leaves out only the validation image paths (they name someone's disk)
    assert zoo_meta == replace(ckpt_meta, data=ckpt_meta.training_data)
    assert zoo_meta.val_examples == [] and ckpt_meta.val_examples
    assert zoo_state.keys() == ckpt_state.keys()
    for name, tensor in ckpt_state.items():
        torch.testing.assert_close(zoo_state[name], tensor, rtol=0, atol=0, msg=name)
    cached = next((tmp_path / "cache").rglob("*.safetensors"))
    assert read_weights(cached)[1] == zoo_meta


def test_a_safetensors_file_is_rewritten_byte_for_byte(tiny_run, tmp_path):
    state, meta = read_weights(tiny_run / "best.ckpt")
    first = write_safetensors(state, meta, tmp_path / "a.safetensors")
    again = write_safetensors(*read_weights(first), tmp_path / "b.safetensors")
    assert first.read_bytes() == again.read_bytes()


def test_what_is_no_moths_checkpoint_is_one_line(tiny_run, tmp_path):
    with pytest.raises(CheckpointError, match="nothing.ckpt not found"):
        read_weights(tmp_path / "nothing.ckpt")
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="no moths.checkpoint metadata"):
        read_weights(plain)
    stored = read_checkpoint(tiny_run / "best.ckpt")[CHECKPOINT_KEY]
    with pytest.raises(CheckpointError, match="'moths' has no backbone"):
        CheckpointMeta.from_dict({k: v for k, v in stored.items() if k != "backbone"})
    with pytest.raises(CheckpointError, match="m.ckpt: unreadable moths metadata"):
        CheckpointMeta.from_dict({**stored, "hierarchy": "{not json"}, "m.ckpt")
