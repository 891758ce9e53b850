"""moths_framework.inference: the model contract, providers, preprocessing, predictions.

The models are real ONNX files exported from tiny torch networks
(:mod:`helpers.onnx_models`).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers.onnx_models import (
    HIERARCHY,
    constant_net,
    export_model,
    logits_for,
    look_alike_logits,
    metadata,
    save_image,
    tiny_net,
)
from PIL import Image

from moths_framework.data.transforms import eval_transform
from moths_framework.hierarchy import OTHER, LabelHierarchy
from moths_framework.images import open_rgb
from moths_framework.inference import (
    OTHER_PREDICTION,
    ModelFormatError,
    ModelMetadata,
    OnnxClassifier,
    SpeciesListError,
)
from moths_framework.inference import providers as providers_module
from moths_framework.inference.preprocess import preprocess
from moths_framework.preprocessing import Preprocessing

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(tiny_net(), tmp_path_factory.mktemp("m") / "tiny.onnx", metadata())


@pytest.fixture
def constant_model(tmp_path: Path):
    def make(logits: dict[str, list[float]], temperature: dict[str, float] | None = None) -> Path:
        return export_model(constant_net(logits), tmp_path / "const.onnx", metadata(temperature))

    return make


@pytest.mark.parametrize("module", ["moths_framework.inference", "moths_framework.cli.infer"])
def test_imports_no_torch(module: str) -> None:
    # Every public name resolved: the package imports its modules on first use.
    code = (
        f"import {module}, sys; module = sys.modules[{module!r}]; "
        "[getattr(module, name) for name in getattr(module, '__all__', ())]; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metadata_round_trip() -> None:
    original = metadata({"species": 1.5})
    props = original.to_props()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert ModelMetadata.from_props(props, "m.onnx") == original
    assert original.temperature == {"species": 1.5, "group": 1.0, "family": 1.0, "genus": 1.0}


def test_model_without_moths_metadata_is_named(tmp_path: Path) -> None:
    path = export_model(tiny_net(), tmp_path / "plain.onnx")
    with pytest.raises(ModelFormatError, match=r"plain\.onnx was not exported by moths-export"):
        OnnxClassifier.from_file(path)


def test_metadata_missing_key_is_named() -> None:
    props = metadata().to_props()
    del props["moths.preprocessing"]
    with pytest.raises(ModelFormatError, match=r"m\.onnx .*moths\.preprocessing missing"):
        ModelMetadata.from_props(props, "m.onnx")


def test_auto_providers_prefer_tensorrt_then_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU, CUDA, TRT])
    assert providers_module.resolve_providers("auto") == [TRT, CUDA, CPU]
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert providers_module.resolve_providers("auto") == [CPU]


def test_explicit_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert providers_module.resolve_providers("cuda, cpu") == [CUDA, CPU]
    assert providers_module.resolve_providers([CUDA]) == [CUDA, CPU]
    with pytest.raises(ValueError, match=r"openvino.*available: CUDAExecutionProvider, CPU"):
        providers_module.resolve_providers("openvino")


def test_gpu_start_failure_falls_back_to_cpu(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_session, calls = ort.InferenceSession, []

    def session(path, sess_options, providers):
        calls.append((sess_options, dict(providers)))
        if providers[0][0] != CPU:
            raise RuntimeError("libcudnn.so.9: cannot open shared object file")
        return real_session(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", session)
    with caplog.at_level(logging.INFO, logger="moths_framework"):
        classifier = OnnxClassifier.from_file(tiny_model)
    assert classifier.provider == CPU
    # first a CPU probe that reads the input shape for TensorRT's profiles
    tries = [list(providers) for _, providers in calls]
    assert tries == [[CPU], [TRT, CUDA, CPU], [CUDA, CPU], [CPU]]
    assert "TensorrtExecutionProvider failed to start (libcudnn" in caplog.text
    assert "trying CUDAExecutionProvider, CPUExecutionProvider" in caplog.text
    assert "runs tiny.onnx on CPUExecutionProvider" in caplog.text
    options, first_try = calls[1]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert first_try[TRT]["trt_engine_cache_path"].startswith(
        str(tiny_model.parent / "tiny.trt_cache")
    )
    assert first_try[TRT]["trt_fp16_enable"] is False  # an fp32 model builds an fp32 engine


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
@pytest.mark.parametrize("size", [(300, 200), (150, 401), (20, 30), (36, 36), (41, 17)])
def test_preprocessing_equals_torchvision(interpolation: str, size: tuple[int, int]) -> None:
    for p in (Preprocessing((32, 32), 0.875, interpolation), Preprocessing((48, 64), 0.9)):
        pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        expected = eval_transform(p)(image).numpy()
        assert np.abs(preprocess(image, p) - expected).max() <= 1e-5


def test_outputs_equal_the_torch_model(tiny_model: Path, tmp_path: Path) -> None:
    classifier = OnnxClassifier.from_file(tiny_model, "cpu")
    images = [open_rgb(save_image(tmp_path / f"{i}.png", 50 + 9 * i, 40, i)) for i in range(3)]
    batch = np.stack([classifier.preprocess(image) for image in images])
    with torch.no_grad():
        expected = tiny_net()(torch.from_numpy(batch))
    for rank, logits in zip(HIERARCHY.ranks, expected, strict=False):
        np.testing.assert_allclose(classifier.logits(batch)[rank], logits.numpy(), atol=1e-4)
    probs = torch.softmax(expected[0], dim=1).numpy()
    predictions = classifier.predict(images, top_k=10)
    for prediction, row in zip(predictions, probs, strict=True):
        best = HIERARCHY.classes("species")[int(row.argmax())]
        assert prediction.top1("species") == (best, pytest.approx(row.max(), abs=1e-5))
        assert len(prediction.top_k["species"]) == 6  # capped at the number of classes


def test_temperature_is_applied(constant_model) -> None:
    logits = logits_for(species=("Aus beta", 0.8))
    classifier = OnnxClassifier.from_file(constant_model(logits, {"species": 2.0}))
    probs = np.exp(np.array(logits["species"]) / 2.0)
    prediction = classifier.predict(Image.new("RGB", (40, 40)))[0]
    assert prediction.top1("species") == ("Aus beta", pytest.approx(probs.max() / probs.sum()))


def test_ranks_by_specificity() -> None:
    assert HIERARCHY.ranks_by_specificity() == ("species", "genus", "family", "group")
    # a plain CSV may list its ranks narrow to broad: the class counts tell
    table = {"A a": ("A", "F", "L"), "A b": ("A", "F", "L"), "B c": ("B", "F", "L"),
             "C d": ("C", "G", "L")}  # fmt: skip
    narrow_first = LabelHierarchy(("species", "genus", "family", "order"), table)
    assert narrow_first.ranks_by_specificity() == ("species", "genus", "family", "order")


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        ({"species": 0.3}, ("Aus beta", "species", 0.4, True)),
        ({}, ("Aus", "genus", 0.6, True)),
        ({"genus": 0.9}, ("Fam1", "family", 0.7, True)),
        ({"genus": 0.9, "family": 0.9}, ("micro", "group", 0.8, True)),
        (dict.fromkeys(HIERARCHY.ranks, 0.95), ("micro", "group", 0.8, False)),
    ],
)
def test_roll_up(constant_model, thresholds: dict[str, float], expected: tuple) -> None:
    logits = logits_for(("Aus beta", 0.4), ("micro", 0.8), ("Fam1", 0.7), ("Aus", 0.6))
    classifier = OnnxClassifier.from_file(constant_model(logits), thresholds=thresholds)
    p = classifier.predict(Image.new("RGB", (40, 40)))[0]
    name, rank, prob, confident = expected
    assert (p.prediction, p.prediction_rank, p.confident) == (name, rank, confident)
    assert p.prediction_prob == pytest.approx(prob, abs=1e-6)


def test_other_top1_is_not_a_trained_species(constant_model) -> None:
    classifier = OnnxClassifier.from_file(constant_model(logits_for(species=(OTHER, 0.9))))
    p = classifier.predict(Image.new("RGB", (40, 40)))[0]
    assert (p.prediction, p.prediction_rank) == (OTHER_PREDICTION, "species")
    assert p.top1("species")[0] == OTHER


def test_species_list_renormalize_mode_renormalises_every_rank(
    constant_model, tmp_path: Path
) -> None:
    logits = logits_for(species=("Aus alpha", 0.6), genus=("Bus", 0.5))
    listed = tmp_path / "region.txt"
    listed.write_text("# our region\nAus beta\n\nCus delta\nRare one\n")
    classifier = OnnxClassifier.from_file(
        constant_model(logits), species_list=listed, mask_mode="renormalize"
    )
    p = classifier.predict(Image.new("RGB", (40, 40)), top_k=10)[0]
    kept = {OTHER, "Aus beta", "Cus delta"}
    classes = HIERARCHY.classes("species")
    weights = {c: np.exp(v) for c, v in zip(classes, logits["species"], strict=True)}
    total = sum(weights[c] for c in kept)
    assert {name for name, _ in p.top_k["species"]} == kept
    for name, prob in p.top_k["species"]:
        assert prob == pytest.approx(weights[name] / total)
    assert {name for name, _ in p.top_k["genus"]} == {OTHER, "Aus", "Cus"}
    assert sum(prob for _, prob in p.top_k["genus"]) == pytest.approx(1.0)


def test_species_list_keeps_listed_probabilities_and_gives_the_rest_to_other(
    constant_model,
) -> None:
    logits = logits_for(("Aus alpha", 0.6), ("macro", 0.5), ("Fam3", 0.4), ("Bus", 0.5))
    model = constant_model(logits)
    image = Image.new("RGB", (40, 40))
    everything = OnnxClassifier.from_file(model).predict(image, top_k=10)[0].top_k
    listed = OnnxClassifier.from_file(model, species_list=["Aus beta", "Cus delta"])
    assert listed.mask_mode == "other"
    masked = listed.predict(image, top_k=10)[0].top_k
    kept = {"species": {"Aus beta", "Cus delta"}, "group": {"micro", "macro"},
            "family": {"Fam1", "Fam2"}, "genus": {"Aus", "Cus"}}  # fmt: skip
    for rank in HIERARCHY.ranks:
        before, after = dict(everything[rank]), dict(masked[rank])
        assert set(after) == kept[rank] | {OTHER}
        for name in kept[rank]:  # a listed class's probability does not change
            assert after[name] == pytest.approx(before[name], abs=1e-9)
        removed = sum(p for name, p in before.items() if name not in after)
        assert after[OTHER] == pytest.approx(before[OTHER] + removed, abs=1e-9)
        assert sum(after.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("mode", "answer", "prob"),
    [("other", OTHER_PREDICTION, 0.6 + 0.025 * 3), ("renormalize", "Aus beta", 0.3 / 0.35)],
)
def test_the_roll_up_uses_the_masked_probabilities(
    constant_model, mode: str, answer: str, prob: float
) -> None:
    classifier = OnnxClassifier.from_file(
        constant_model(look_alike_logits()), species_list=["Aus beta", "Cus delta"], mask_mode=mode
    )
    p = classifier.predict(Image.new("RGB", (40, 40)))[0]
    assert (p.prediction, p.prediction_rank, p.confident) == (answer, "species", True)
    assert p.prediction_prob == pytest.approx(prob)


def test_unknown_mask_mode_is_named(constant_model) -> None:
    with pytest.raises(ValueError, match=r"mask mode must be one of other, renormalize, got 'x'"):
        OnnxClassifier.from_file(
            constant_model(logits_for()), species_list=["Aus beta"], mask_mode="x"
        )


def test_species_list_unknown_names_are_named(constant_model) -> None:
    path = constant_model(logits_for())
    with pytest.raises(SpeciesListError, match=r"'Aus betta' \(did you mean 'Aus beta'.*'Zzz'"):
        OnnxClassifier.from_file(path, species_list=["Aus alpha", "Aus betta", "Zzz"])


def test_bad_images_give_errors_in_order(tiny_model: Path, tmp_path: Path) -> None:
    good = save_image(tmp_path / "good.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:300])
    inputs = [good, tmp_path / "empty.jpg", tmp_path / "text.jpg", tmp_path / "cut.jpg",
              tmp_path / "missing.jpg", Image.open(good), good]  # fmt: skip
    predictions = OnnxClassifier.from_file(tiny_model).predict(inputs, batch_size=2)
    assert [p.ok for p in predictions] == [True, False, False, False, False, True, True]
    assert [p.source for p in predictions[:5]] == [str(path) for path in inputs[:5]]
    assert "empty" in predictions[1].error and "not-an-image" in predictions[2].error
    assert predictions[1].prediction is None and predictions[1].top_k == {}
    assert predictions[0].top_k == predictions[6].top_k


def test_results_keep_input_order_across_batches(tiny_model: Path, tmp_path: Path) -> None:
    paths = [save_image(tmp_path / f"{i}.png", 30 + i, 40, seed=i) for i in range(7)]
    classifier = OnnxClassifier.from_file(tiny_model)
    one_by_one = [classifier.predict(path)[0] for path in paths]
    batched = classifier.predict(paths, batch_size=3)
    assert [p.source for p in batched] == [str(path) for path in paths]
    for single, in_batch in zip(one_by_one, batched, strict=True):
        assert single.prediction == in_batch.prediction
        assert single.prediction_prob == pytest.approx(in_batch.prediction_prob, abs=1e-6)
