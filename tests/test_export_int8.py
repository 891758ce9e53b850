"""moths-export --int8: static quantisation, metadata, agreement with float32, refusal."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from moths_framework.cli.export import main as export_command
from moths_framework.export import onnx as onnx_export
from moths_framework.export.int8 import _spatial_means_as_global_pools, quantize_int8
from moths_framework.export.onnx import _calibration_order, export_onnx
from moths_framework.inference import OnnxClassifier
from moths_framework.inference.metadata import INPUT_NAME
from moths_framework.model.checkpoint import read_weights


@pytest.fixture(scope="module")
def int8_export(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model.onnx"
    return export_onnx(tiny_run / "best.ckpt", out, int8=True, calibration_images=16)


def test_int8_model_is_quantized_and_agrees_with_fp32(int8_export):
    report = int8_export.int8
    assert report is not None and report.source == "images" and report.images > 5
    assert report.calibration_images == 16
    assert min(report.top1_agreement.values()) >= 0.99
    assert 0 < max(report.max_abs_prob_diff.values()) < 1  # reported
    ops = {node.op_type for node in onnx.load(str(int8_export.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_metadata_and_model_card_say_int8(int8_export, tiny_run, tmp_path):
    classifier = OnnxClassifier.from_file(int8_export.path, providers="cpu")
    props = ort.InferenceSession(str(int8_export.path), providers=["CPUExecutionProvider"])
    assert props.get_modelmeta().custom_metadata_map["moths.precision"] == "int8"
    assert classifier.metadata.precision == "int8"
    card = classifier.metadata.model_card
    assert card["precision"] == "int8" and card["int8"]["calibration_images"] == 16
    assert min(card["int8"]["top1_agreement_with_fp32"].values()) >= 0.99
    session = ort.InferenceSession(str(int8_export.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    assert {o.type for o in session.get_outputs()} == {"tensor(float)"}


def test_moths_infer_reads_the_int8_model_like_any_other(int8_export, tiny_run, tmp_path):
    fp32 = export_onnx(tiny_run / "best.ckpt", tmp_path / "fp32.onnx")
    images = read_weights(tiny_run / "best.ckpt")[1].val_examples[:8]
    predicted = [
        [p.top1("species")[0] for p in OnnxClassifier.from_file(m, providers="cpu").predict(images)]
        for m in (int8_export.path, fp32.path)
    ]
    assert predicted[0] == predicted[1] and len(predicted[0]) == 8


@pytest.mark.parametrize(("flag", "precision"), [([], "fp32"), (["--fp16"], "fp16")])
def test_every_export_records_its_precision(tiny_run, tmp_path, flag, precision):
    out = tmp_path / "m.onnx"
    assert export_command(["--onnx", "--ckpt", str(tiny_run / "best.ckpt"),
                           "--output", str(out), *flag]) == 0  # fmt: skip
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    assert props["moths.precision"] == precision
    assert OnnxClassifier.from_file(out, providers="cpu").metadata.precision == precision
    assert OnnxClassifier.from_file(out, providers="cpu").metadata.model_card["precision"] == (
        precision
    )


def test_int8_that_changes_the_top1_writes_nothing(tiny_run, tmp_path, monkeypatch, capsys):
    quantize = onnx_export.quantize_int8

    def broken(fp32, output, calibration):  # the least likely species becomes the top-1
        proto = quantize(fp32, output, calibration)
        for node in proto.graph.node:
            node.output[:] = ["species_raw" if o == "species" else o for o in node.output]
        proto.graph.node.append(onnx.helper.make_node("Neg", ["species_raw"], ["species"]))
        onnx.save(proto, str(output))
        return proto

    monkeypatch.setattr(onnx_export, "quantize_int8", broken)
    out = tmp_path / "int8.onnx"
    args = ["--onnx", "--ckpt", str(tiny_run / "best.ckpt"), "--output", str(out), "--int8",
            "--calibration-images", "8"]  # fmt: skip
    assert export_command(args) == 2
    err = capsys.readouterr().err
    assert "int8 changes the top-1 too often" in err and "below 99% at species" in err
    assert "nothing written" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


def test_unreadable_calibration_images_are_one_line(tiny_run, tmp_path, capsys):
    args = ["--onnx", "--ckpt", str(tiny_run / "best.ckpt"), "--output",
            str(tmp_path / "out" / "m.onnx"), "--int8", "--calibration",
            str(tmp_path / "missing.jpg")]  # fmt: skip
    assert export_command(args) == 2
    err = capsys.readouterr().err
    assert "int8 needs calibration images" in err and len(err.strip().splitlines()) == 1
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("extra", [["--fp16", "--int8"], ["--int8", "--calibration-images", "0"]])
def test_bad_int8_options_are_usage_errors(tiny_run, tmp_path, capsys, extra):
    args = ["--onnx", "--ckpt", str(tiny_run / "best.ckpt"), "--output", str(tmp_path / "m.onnx")]
    with pytest.raises(SystemExit) as exit_info:
        export_command([*args, *extra])
    assert exit_info.value.code == 2
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoints_record_enough_validation_images_to_calibrate(tiny_run):
    data = read_weights(tiny_run / "best.ckpt")[1].data
    assert data["split"]["val"] > 32  # test_data's split: more than the 32 once kept
    assert len(data["val_examples"]) == data["split"]["val"]


def test_calibration_prefers_images_the_parity_check_does_not_use():
    assert _calibration_order(["a", "b", "c", "d"], ["b", "d"]) == ["a", "c", "b", "d"]
    assert _calibration_order(["a", "b"], ["a", "b"]) == ["a", "b"]


def test_spatial_means_become_global_pools_with_the_same_values(tmp_path):
    node = onnx.helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=1)
    other = onnx.helper.make_node("ReduceMean", ["y"], ["z"], axes=[1], keepdims=1)
    graph = onnx.helper.make_graph(
        [node, other], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 5, 4])],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)],
    )  # fmt: skip
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)

    def run(model: onnx.ModelProto) -> np.ndarray:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        return session.run(None, {"x": x})[0]

    before = run(proto)
    assert _spatial_means_as_global_pools(proto) == 1  # the channel mean stays
    assert [n.op_type for n in proto.graph.node] == ["GlobalAveragePool", "ReduceMean"]
    np.testing.assert_allclose(run(proto), before, rtol=1e-6)


def _bench_int8():
    from helpers.bench_scripts import load_bench

    return load_bench("int8")


def test_bench_alternates_who_goes_first_and_words_the_result_line():
    bench = _bench_int8()
    calls: list[str] = []
    bench.alternate({"fp32": lambda: calls.append("fp32"), "int8": lambda: calls.append("int8")},
                    images=8, rounds=3)  # fmt: skip
    assert calls == ["fp32", "int8"] + ["fp32", "int8", "int8", "fp32", "fp32", "int8"]
    int8, fp32 = bench.Rates([90.0, 100.0, 110.0], [200.0]), bench.Rates([50.0], [100.0])
    line = bench.result_line(int8, fp32, 0.995, "model only, efficientnet_b0, 2 threads")
    assert line == (
        "int8: 100.0 img/s vs fp32 50.0 img/s, 2.00x, top-1 agreement 99.5% "
        "(model only, efficientnet_b0, 2 threads; per CPU-second 2.00x)"
    )


def test_calibration_over_many_batches_keeps_every_batch(tiny_run, tmp_path):
    """The input's quantisation range is the min/max over every calibration batch: the
    first batch alone holds the largest value and the last alone the smallest."""
    # onnxruntime 1.32 loses collected ranges at CalibMaxIntermediateOutputs
    fp32 = export_onnx(tiny_run / "best.ckpt", tmp_path / "fp32.onnx").path
    rng = np.random.default_rng(0)
    inputs = rng.uniform(-1.0, 1.0, size=(64, 3, 32, 32)).astype(np.float32)  # 4+ batches
    inputs[0, 0, 0, 0], inputs[-1, 0, 0, 0] = 30.0, -20.0
    proto = quantize_int8(fp32, tmp_path / "int8.onnx", inputs)
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    (quantize,) = [
        n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == INPUT_NAME
    ]
    # uint8 min/max: the range [min(lo, 0), max(hi, 0)] spread over 255 steps
    lo, hi = min(float(inputs.min()), 0.0), max(float(inputs.max()), 0.0)
    assert (lo, hi) == (-20.0, 30.0)
    assert float(constants[quantize.input[1]]) == pytest.approx((hi - lo) / 255, rel=1e-6)
    assert int(constants[quantize.input[2]]) == round(-lo / ((hi - lo) / 255))  # 102
