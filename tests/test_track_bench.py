"""bench/track.py runs end to end at a tiny size and ends with the result line
bench/README.md quotes (the numbers mean nothing here)."""

from __future__ import annotations

import re

import pytest
from helpers.bench_scripts import load_bench


@pytest.mark.slow  # renders a night, runs the demo detector and classifier: about 10 s
def test_track_bench_ends_with_its_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    track = load_bench("track")
    track.main(["--nights", "1", "--frames", "8", "--moths", "4", "--detections", "300"])
    lines = capsys.readouterr().out.strip().splitlines()
    runs = ("demo classifier", "simulated classifier", "true boxes, simulated classifier")
    for run in runs:
        assert any(line.startswith(f"{run}: MOTA ") for line in lines), run
    assert re.fullmatch(
        r"track: count error \d+\.\d% \(detections \d+\.\d%\), IDF1 \d\.\d{3}, "
        r"\d{3} detections in \d+\.\d\d s",
        lines[-1],
    )
