"""bench/detect.py runs end to end at tiny sizes and ends with the result line
bench/README.md quotes (the numbers mean nothing here)."""

from __future__ import annotations

import re

import pytest
from helpers.bench_scripts import load_bench


@pytest.mark.slow  # two exports and two fresh processes for the memory line: about a minute
def test_detect_bench_runs_and_ends_with_its_result_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    detect = load_bench("detect")
    # timm's smallest EfficientNet and torchvision's smallest detector: the same code, quick
    monkeypatch.setattr(detect.infer, "BACKBONE", "test_efficientnet")
    detect.main(["--frames", "2", "--size", "320x240", "--detector", "fasterrcnn_tiny",
                 "--detections", "3", "--rounds", "1", "--threads", "1",
                 "--memory-frame", "400x300"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert "fasterrcnn_tiny + test_efficientnet, 2 frames 320x240, 3 boxes a frame, 1 thread, " in (
        "\n".join(lines)
    )
    agreement = r"crops ort 6, torch 6; species top-1 agreement \d+\.\d% \(torch prefetch: .*"
    assert any(re.fullmatch(agreement, line) for line in lines)
    assert re.fullmatch(
        r"memory, one 400x300 frame: ort peak RSS \d+ MB \(\d+ MB before it; torch imported: "
        r"False; its 3 crops \d+ MB\), torch plain loop \d+ MB \(\d+ MB before it\)",
        lines[-2],
    )
    assert re.fullmatch(
        r"detect: ort \d+\.\d\d frames/s, torch best \d+\.\d\d frames/s, \d+\.\d\dx", lines[-1]
    )
