"""bench/serve.py and bench/train.py run end to end at tiny sizes and end with their one
result line in the format bench/README.md quotes (the numbers mean nothing here)."""

from __future__ import annotations

import logging
import re

import pytest
from helpers.bench_scripts import load_bench


def test_serve_bench_runs_and_ends_with_its_result_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve = load_bench("serve")
    # timm's smallest EfficientNet instead of efficientnet_b0: the same code, a quick export
    monkeypatch.setattr(serve.infer, "BACKBONE", "test_efficientnet")
    serve.main(["--images", "4", "--species", "30", "--per-request", "2", "--rounds", "1",
                "--threads", "1", "--max-batch", "4"])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"offline \(moths-infer\): \d+\.\d img/s", lines[-4])
    for clients, line in zip((1, 8, 32), lines[-3:], strict=True):
        assert re.fullmatch(
            rf"serve: c={clients} \d+\.\d img/s, p99 \d+ ms, \d+% of offline, "
            r"CPU per image \d+\.\d ms vs \d+\.\d ms offline \(30 classes\)",
            line,
        )
    # 30 species in 10 genera, 1 family, 1 group, and Other at each rank: 31 + 2 + 2 + 11
    assert (
        "test_efficientnet, 30 species (46 classes on 4 ranks), 4 images 640x480, 2 per request, "
        "1 threads, max batch 4" in "\n".join(lines)
    )


def test_train_bench_runs_and_ends_with_its_result_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    train = load_bench("train")
    loggers = {name: logging.getLogger(name) for name in ("lightning", "lightning.pytorch",
                                                           "lightning.fabric")}  # fmt: skip
    levels = {name: logger.level for name, logger in loggers.items()}
    try:  # the script quiets Lightning for good: only for this test here
        train.main(["--steps", "2", "--warmup", "1", "--rounds", "1", "--batch-size", "2",
                    "--size", "32", "--model", "test_efficientnet"])  # fmt: skip
    finally:
        for name, logger in loggers.items():
            logger.setLevel(levels[name])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("test_efficientnet at 32px, batch 2, ")
    assert "2 timed step pairs after 1" in lines[0]
    assert lines[1].startswith("round 1: median step framework ")
    assert lines[-2].startswith("all rounds: median step framework ")
    assert re.fullmatch(r"train: framework step time \d+\.\d\dx of bare loop", lines[-1])
