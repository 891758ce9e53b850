"""TensorRT provider options, built and checked without a GPU."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from helpers.onnx_models import export_model, metadata, tiny_net
from PIL import Image

from moths_framework.inference import providers
from moths_framework.inference.providers import (
    CPU,
    CUDA,
    TENSORRT,
    EngineSettings,
    open_session,
    tensorrt_options,
)


def test_profiles_cover_batch_1_to_twice_the_batch_size(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model one")
    options = tensorrt_options(model, "image", (3, 224, 224), 64, False, "NVIDIA H100 80GB HBM3")
    assert options["trt_profile_min_shapes"] == "image:1x3x224x224"
    assert options["trt_profile_opt_shapes"] == "image:64x3x224x224"
    assert options["trt_profile_max_shapes"] == "image:128x3x224x224"
    assert options["trt_fp16_enable"] is False
    assert options["trt_engine_cache_enable"] is True
    assert Path(options["trt_engine_cache_path"]).parent == tmp_path / "m.trt_cache"
    assert options["trt_engine_cache_path"].endswith("-nvidia-h100-80gb-hbm3")


def test_engine_cache_is_keyed_by_model_content_and_gpu(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model one")
    first = tensorrt_options(model, "image", (3, 8, 8), 4, False, "A100")["trt_engine_cache_path"]
    other_gpu = tensorrt_options(model, "image", (3, 8, 8), 4, False, "L4")
    model.write_bytes(b"model two, retrained")
    updated = tensorrt_options(model, "image", (3, 8, 8), 4, False, "A100")
    assert len({first, other_gpu["trt_engine_cache_path"], updated["trt_engine_cache_path"]}) == 3


def test_bad_batch_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match="batch size"):
        tensorrt_options(tmp_path / "m.onnx", "image", (3, 8, 8), 0, False, "gpu")


REAL_SESSION = ort.InferenceSession


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(tiny_net(), tmp_path_factory.mktemp("m") / "tiny.onnx", metadata())


@pytest.fixture
def tensorrt_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Provider options of every session opened; TensorRT and CUDA fail to start."""
    calls: list[dict] = []

    def session(path, sess_options, providers):
        calls.append(dict(providers))
        if providers[0][0] != CPU:
            raise RuntimeError("no TensorRT here")
        return REAL_SESSION(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(providers, "_gpu", lambda: "Test GPU")
    return calls


@pytest.mark.parametrize(("fp16", "expected"), [(None, False), (True, True), (False, False)])
def test_session_gets_profiles_from_the_model_itself(
    tiny_model: Path, tensorrt_calls: list[dict], fp16: bool | None, expected: bool
) -> None:
    open_session(tiny_model, [TENSORRT, CUDA, CPU], engine=EngineSettings(16, fp16))
    trt = next(call[TENSORRT] for call in tensorrt_calls if TENSORRT in call)
    height, width = (d for d in REAL_SESSION(str(tiny_model)).get_inputs()[0].shape[2:])
    assert trt["trt_profile_opt_shapes"] == f"image:16x3x{height}x{width}"
    assert trt["trt_profile_max_shapes"] == f"image:32x3x{height}x{width}"
    assert trt["trt_fp16_enable"] is expected


def test_moths_infer_passes_batch_size_and_fp16_engine_to_tensorrt(
    tiny_model: Path, tmp_path: Path, tensorrt_calls: list[dict]
) -> None:
    from moths_framework.cli import infer

    image = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (120, 80, 40)).save(image)
    args = ["--model", str(tiny_model), str(image), "--output", str(tmp_path / "p.csv")]
    assert infer.main([*args, "--batch-size", "8", "--fp16-engine", "--no-progress"]) == 0
    trt = next(call[TENSORRT] for call in tensorrt_calls if TENSORRT in call)
    assert trt["trt_profile_opt_shapes"].startswith("image:8x3x")
    assert trt["trt_profile_max_shapes"].startswith("image:16x3x")
    assert trt["trt_fp16_enable"] is True
