"""ONNX Runtime's CUDA provider on a real GPU: ``pytest -m gpu`` on a machine with one and
onnxruntime-gpu installed in place of onnxruntime. Deselected everywhere else (CI included)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from moths_framework.inference.providers import CPU, CUDA, open_session, resolve_providers

pytestmark = pytest.mark.gpu


def test_the_cuda_provider_runs_the_model_as_the_cpu_does(model_file):
    available = ort.get_available_providers()
    assert CUDA in available, (
        f"this onnxruntime has {available}: pip uninstall onnxruntime; pip install onnxruntime-gpu"
    )
    on_gpu = open_session(model_file, resolve_providers("cuda"))
    assert on_gpu.get_providers()[0] == CUDA  # not a silent fallback to CPU
    on_cpu = open_session(model_file, [CPU])
    image = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    names = [output.name for output in on_cpu.get_outputs()]
    gpu_outputs = on_gpu.run(names, {"image": image})
    for name, gpu, cpu in zip(names, gpu_outputs, on_cpu.run(names, {"image": image}), strict=True):
        np.testing.assert_allclose(gpu, cpu, rtol=0, atol=1e-4, err_msg=name)
