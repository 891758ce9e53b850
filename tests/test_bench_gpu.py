"""bench/gpu.py keeps working on machines without a GPU (CI): it reports and exits 0, and its
trap-frame step runs end to end on the CPU."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from helpers.bench_scripts import load_bench
from helpers.paths import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the no-GPU path")
def test_gpu_script_without_a_gpu_reports_skipped_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py")], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "gpu: skipped (no CUDA device)"
    assert any(line.startswith("providers: ") for line in lines)


@pytest.mark.slow
def test_the_frames_step_runs_end_to_end_on_the_cpu(tmp_path) -> None:
    """Step 5 without a GPU (device="cpu", tiny frames): both pipelines, both PyTorch loops,
    the agreement on the same detector input, and the result line."""
    gpu = load_bench("gpu")
    line = gpu.frames_speed(tmp_path, device="cpu", frames=2, size=(320, 240), detections=5,
                            rounds=1)  # fmt: skip
    assert re.fullmatch(
        r"gpu detect: ort \d+\.\d\d frames/s \(CPUExecutionProvider\), ort cpu \d+\.\d\d, "
        r"torch (plain|prefetch) \d+\.\d\d \(cpu\), \d+\.\d\dx",
        line,
    ), line
