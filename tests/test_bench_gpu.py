"""bench/gpu.py keeps working on machines without a GPU (CI): it reports and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
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
