"""moths-stats: exact channel statistics of the pixels the model sees."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from moths_framework.cli.stats import main
from moths_framework.data.sources import ImageFolder
from moths_framework.data.stats import pixel_stats
from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.inference.preprocess import preprocess
from moths_framework.preprocessing import Preprocessing


def _numpy_reference(paths, p: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over all pixels, via the model's own preprocessing with mean 0, std 1."""
    plain = Preprocessing(p.input_size, p.crop_pct, p.interpolation, (0, 0, 0), (1, 1, 1))
    arrays = []
    for path in paths:
        try:
            arrays.append(preprocess(open_rgb(path), plain).astype(np.float64))
        except ImageDecodeError:
            continue
    pixels = np.concatenate([a.reshape(3, -1) for a in arrays], axis=1)
    return pixels.mean(axis=1), pixels.std(axis=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_equals_numpy_over_all_pixels(test_data, workers):
    paths = [s.path for s in ImageFolder(test_data / "source_b").samples()]
    p = Preprocessing(input_size=(40, 48), crop_pct=0.9, interpolation="bicubic")
    stats = pixel_stats(paths, p, workers=workers, progress=False)
    mean, std = _numpy_reference(paths, p)
    np.testing.assert_allclose(stats.mean, mean, atol=1e-4)
    np.testing.assert_allclose(stats.std, std, atol=1e-4)
    assert stats.pixels == 40 * 48 * stats.images
    assert stats.images + len(stats.failed) == len(paths) and stats.failed  # planted broken files


def test_std_includes_the_variance_between_images(tmp_path):
    # Two flat images: each has zero variance, together std is 0.5 on the 0-1 scale.
    for name, value in (("black", 0), ("white", 255)):
        (tmp_path / "s").mkdir(exist_ok=True)
        Image.new("RGB", (20, 20), (value,) * 3).save(tmp_path / "s" / f"{name}.png")
    paths = sorted((tmp_path / "s").iterdir())
    stats = pixel_stats(paths, Preprocessing(input_size=16), workers=1, progress=False)
    assert stats.mean == pytest.approx((0.5, 0.5, 0.5))
    assert stats.std == pytest.approx((0.5, 0.5, 0.5))


def test_command_prints_a_block_to_paste_and_reads_a_config(test_data, tmp_path, capsys):
    config = tmp_path / "fit.yaml"
    config.write_text(
        "model:\n  preprocessing:\n    input_size: [32, 32]\n    crop_pct: 1.0\n"
        "    interpolation: bilinear\n    mean: [0.5, 0.5, 0.5]\n    std: [0.2, 0.2, 0.2]\n"
    )
    source = str(test_data / "source_a")
    assert main([source, "--config", str(config), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "shorter side resized to 32 (bilinear), centre crop 32x32" in out
    assert "model:\n  preprocessing:\n    input_size: [32, 32]\n    crop_pct: 1.0" in out
    mean = [float(v) for v in re.search(r"mean: \[(.*)\]", out).group(1).split(",")]
    paths = [s.path for s in ImageFolder(test_data / "source_a").samples()]
    expected, _ = _numpy_reference(paths, Preprocessing(input_size=32, crop_pct=1.0))
    np.testing.assert_allclose(mean, expected, atol=1e-6)  # six decimals printed


def test_manifest_sources_and_option_overrides(test_data, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (30, 10), (255, 0, 51)).save(image)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,species\na.png,Aglais io\n")
    assert main([str(manifest), "--input-size", "8", "--crop-pct", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "1 images (0 unreadable, skipped), 64 pixels each" in out
    assert "mean: [1.000000, 0.000000, 0.200000]" in out
    assert "std: [0.000000, 0.000000, 0.000000]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "not an image folder nor a .csv manifest"),
        (["{tmp}", "--input-size", "1", "2", "3"], "one or two numbers"),
        (["{tmp}", "--config", "{tmp}/missing.yaml"], "cannot read it"),
        (["{tmp}"], "no images in"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, capsys, args, message):
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moths-stats: error:") and message in err and "\n" not in err
