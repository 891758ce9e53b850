"""moths-stats --interpolation by its effect: the statistics are those of the pixels the
model sees after a resize with that filter, and the block to paste names it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers.paths import TEST_DATA

from moths_framework.cli.stats import main
from moths_framework.data.sources import ImageFolder
from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.inference.preprocess import preprocess
from moths_framework.preprocessing import Preprocessing

SOURCE = TEST_DATA / "source_b"
SIZE = ["--input-size", "20", "--crop-pct", "1.0"]  # 64x64 images: a real downscale


def printed(out: str, key: str) -> np.ndarray:
    return np.array([float(v) for v in re.search(rf"{key}: \[(.*)\]", out).group(1).split(",")])


def expected(interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over every pixel, through the model's own preprocessing."""
    p = Preprocessing(20, 1.0, interpolation, (0, 0, 0), (1, 1, 1))
    arrays = []
    for sample in ImageFolder(SOURCE).samples():
        try:
            arrays.append(preprocess(open_rgb(sample.path), p).astype(np.float64).reshape(3, -1))
        except ImageDecodeError:
            continue
    pixels = np.concatenate(arrays, axis=1)
    return pixels.mean(axis=1), pixels.std(axis=1)


@pytest.mark.parametrize("interpolation", ["nearest", "bicubic"])
def test_interpolation_is_the_resize_filter_measured(
    interpolation: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(SOURCE), *SIZE, "--interpolation", interpolation, "--workers", "1"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"shorter side resized to 20 ({interpolation}), centre crop 20x20" in out
    assert f"    interpolation: {interpolation}\n" in out
    mean, std = expected(interpolation)
    np.testing.assert_allclose(printed(out, "mean"), mean, atol=1e-6)  # six decimals
    np.testing.assert_allclose(printed(out, "std"), std, atol=1e-6)
    _, bilinear_std = expected("bilinear")  # the default: measurably another filter
    assert np.abs(printed(out, "std") - bilinear_std).max() > 1e-3


def test_an_unknown_interpolation_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(SOURCE), "--interpolation", "cubic", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moths-stats: error: interpolation 'cubic' is not one of")
    assert "\n" not in err
