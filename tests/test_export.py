"""moths-export --onnx: parity, metadata, fp16, refusal to overwrite, atomic writes."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers.fit_args import tiny_fit_args
from helpers.paths import TEST_DATA

from moths_framework.cli.export import main as export_command
from moths_framework.cli.fit import main as fit
from moths_framework.export import ExportError
from moths_framework.export import onnx as onnx_export
from moths_framework.export.onnx import export_onnx
from moths_framework.export.parity import parity_images
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference import OnnxClassifier
from moths_framework.model.checkpoint import CHECKPOINT_KEY
from moths_framework.model.lightning import MothsClassifier
from moths_framework.model.rebuild import load_classifier
from moths_framework.plugins import load

FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, prepared) -> Path:
    run = tmp_path_factory.mktemp("run")
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST)) == 0
    return run / "best.ckpt"


def test_dev_model_parity_on_its_validation_images(checkpoint, tmp_path):
    result = export_onnx(checkpoint, tmp_path / "model.onnx")
    assert result.parity.source == "images" and result.parity.images > 5
    assert max(result.parity.max_abs_diff.values()) <= 1e-3
    assert min(result.parity.top1_agreement.values()) == 1.0


def test_the_file_carries_hierarchy_preprocessing_and_model_card(checkpoint, tmp_path):
    export_onnx(checkpoint, tmp_path / "model.onnx")
    model = load_classifier(checkpoint)
    classifier = OnnxClassifier.from_file(tmp_path / "model.onnx", providers="cpu")
    meta = classifier.metadata
    assert meta.hierarchy == model.hierarchy
    assert meta.preprocessing == model.preprocessing
    card = meta.model_card
    assert card["backbone"]["class_path"] == "tiny_backbone.TinyCNN"
    assert card["ranks"] == model.hierarchy.num_classes()
    assert "val/species/accuracy" in card["validation_metrics"]
    assert card["training_data"]["split"]["val"] > 0 and "exported_with" in card
    assert all(meta.temperature_of(r) == 1.0 for r in meta.hierarchy.ranks)


def test_outputs_are_named_by_rank_with_a_dynamic_batch(checkpoint, tmp_path):
    export_onnx(checkpoint, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["species", "group", "family", "genus", "features"]
    model = load_classifier(checkpoint)
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        outputs = session.run(None, {"image": x.numpy()})
        with torch.inference_mode():
            logits, features = model.net.forward_with_features(x)
        for got, expected in zip(outputs, [*logits, features], strict=True):
            np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_refuses_to_overwrite_without_force(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    args = ["--onnx", "--ckpt", str(checkpoint), "--output", str(out)]
    assert export_command(args) == 0
    assert "parity on" in capsys.readouterr().out
    before = out.read_bytes()
    assert export_command(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert export_command([*args, "--force"]) == 0


def test_force_replaces_only_a_file_moths_export_wrote(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"someone else's model")
    args = ["--onnx", "--ckpt", str(checkpoint), "--output", str(out), "--force"]
    assert export_command(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("moths-export: error: ") and err.count("\n") == 1
    assert str(out) in err and "moths-export did not write it" in err
    assert out.read_bytes() == b"someone else's model"


def test_a_failed_parity_check_writes_nothing(checkpoint, tmp_path, monkeypatch):
    trace = onnx_export._trace

    def perturbed(model, features, path):
        other = copy.deepcopy(model)  # the exported graph differs from the checked model
        with torch.no_grad():
            other.net.heads["species"].bias += 0.5
        trace(other, features, path)

    monkeypatch.setattr(onnx_export, "_trace", perturbed)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_onnx(checkpoint, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_the_model_file_gets_the_umask_permissions(checkpoint, tmp_path, umask):
    previous = os.umask(umask)
    try:
        export_onnx(checkpoint, tmp_path / "model.onnx")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o666 & ~umask


def test_fp16_keeps_float32_inputs_and_outputs(checkpoint, tmp_path):
    result = export_onnx(checkpoint, tmp_path / "half.onnx", fp16=True)
    full = export_onnx(checkpoint, tmp_path / "full.onnx")
    assert 0 < max(result.parity.max_abs_diff.values()) < 0.05  # reported, not bounded
    assert min(result.parity.top1_agreement.values()) == 1.0  # required
    session = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    assert {o.type for o in session.get_outputs()} == {"tensor(float)"}
    assert result.size_bytes < full.size_bytes


def _species_through(op: str):
    """A float16 conversion whose ``species`` output then goes through ``op``."""
    convert = onnx_export._to_fp16

    def broken(proto: onnx.ModelProto) -> onnx.ModelProto:
        half = convert(proto)
        for node in half.graph.node:
            node.output[:] = ["species_raw" if o == "species" else o for o in node.output]
        if op == "Neg":  # the least likely class becomes the top-1
            half.graph.node.append(onnx.helper.make_node("Neg", ["species_raw"], ["species"]))
        else:  # x / 0: every logit infinite
            zero = onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero")
            half.graph.initializer.append(zero)
            half.graph.node.append(
                onnx.helper.make_node("Div", ["species_raw", "zero"], ["species"])
            )
        return half

    return broken


@pytest.mark.parametrize(
    ("op", "message"),
    [("Neg", "top-1 differs at species"), ("Div", "non-finite values (inf/NaN) at species")],
)
def test_fp16_that_breaks_the_model_writes_nothing(
    checkpoint, tmp_path, monkeypatch, capsys, op, message
):
    monkeypatch.setattr(onnx_export, "_to_fp16", _species_through(op))
    out = tmp_path / "half.onnx"
    args = ["--onnx", "--ckpt", str(checkpoint), "--output", str(out), "--fp16"]
    assert export_command(args) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing written" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


def test_missing_or_foreign_checkpoints_are_clear_errors(tmp_path, capsys):
    args = ["--onnx", "--ckpt", str(tmp_path / "nope.ckpt"), "--output", str(tmp_path / "m.onnx")]
    assert export_command(args) == 2
    assert "not found" in capsys.readouterr().err
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    args[2] = str(tmp_path / "other.ckpt")
    assert export_command(args) == 2
    assert "not written by moths-fit" in capsys.readouterr().err


def _edited_checkpoint(checkpoint: Path, tmp_path: Path, backbone: dict) -> Path:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt[CHECKPOINT_KEY]["backbone"] = backbone
    torch.save(ckpt, tmp_path / "edited.ckpt")
    return tmp_path / "edited.ckpt"


@pytest.mark.parametrize(
    ("backbone", "message"),
    [
        (
            {"class_path": "moths_plugin_nowhere.Backbone", "init_args": {}},
            "backbone moths_plugin_nowhere.Backbone is not installed",
        ),
        (
            {"class_path": "tiny_backbone.TinyCNN", "init_args": {"depth": 3}},
            "(backbone tiny_backbone.TinyCNN): TypeError:",
        ),
        (
            {"class_path": "tiny_backbone.TinyCNN", "init_args": {"width": 4}},
            "moths-export: error: ",  # the weights do not fit this backbone
        ),
    ],
)
def test_a_backbone_that_cannot_be_rebuilt_is_one_line(
    checkpoint, tmp_path, capsys, backbone, message
):
    edited = _edited_checkpoint(checkpoint, tmp_path, backbone)
    out = tmp_path / "out" / "model.onnx"
    assert export_command(["--onnx", "--ckpt", str(edited), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.parent.exists()


def test_an_exporter_failure_is_one_line_and_writes_nothing(
    checkpoint, tmp_path, monkeypatch, capsys
):
    def failing_export(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::fancy", 17, 99)

    monkeypatch.setattr(torch.onnx, "export", failing_export)
    args = ["--onnx", "--ckpt", str(checkpoint), "--output", str(tmp_path / "model.onnx")]
    assert export_command(args) == 2
    err = capsys.readouterr().err
    assert "torch.onnx.export could not export" in err and "aten::fancy" in err
    assert "(backbone tiny_backbone.TinyCNN)" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


def plugin_checkpoint(plugin: str, tmp_path: Path, images: list[Path]) -> Path:
    """A checkpoint of an untrained model on a plugin's small example backbone.

    BatchNorm statistics are estimated on real images first: with fresh ones,
    random networks give every image nearly the same logits, and parity would
    hold trivially.
    """
    backbone = load("backbones", plugin).small_example()
    hierarchy = LabelHierarchy.from_csv(TEST_DATA / "hierarchy.csv")
    model = MothsClassifier(backbone, hierarchy)
    batch, _ = parity_images(images, model.preprocessing)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # running statistics = this batch's
    with torch.no_grad():
        model.train()(batch)
    model.eval()
    ckpt: dict = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / f"{plugin}.ckpt")
    return tmp_path / f"{plugin}.ckpt"


@pytest.mark.parametrize("plugin", ["timm", "torchvision"])
def test_plugin_backbones_export_with_parity(plugin, tmp_path):
    images = [next((TEST_DATA / "source_b" / s).glob("*.jpg")) for s in
              ("Pieris rapae", "Noctua comes", "Aglais io", "Cydia pomonella")]  # fmt: skip
    checkpoint = plugin_checkpoint(plugin, tmp_path, images)
    result = export_onnx(checkpoint, tmp_path / "m.onnx", images=images)
    assert result.parity.source == "images"
    assert max(result.parity.max_abs_diff.values()) <= 1e-3
    batch, _ = parity_images(images, load_classifier(checkpoint).preprocessing)
    with torch.inference_mode():
        species = load_classifier(checkpoint)(batch)[0]
    assert species.std(dim=0).mean() > 1e-3  # the images' logits differ: parity means something
