"""moths-calibrate's --target-precision and --config, each by its effect on the
calibrated checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from moths_framework.cli.calibrate import main as calibrate
from moths_framework.model.checkpoint import checkpoint_meta, read_checkpoint
from moths_framework.model.checkpoint_meta import CheckpointMeta

QUIET = ["--trainer.enable_progress_bar", "false"]


def calibrated(tiny_run: Path, output: Path, *args: str) -> CheckpointMeta:
    assert calibrate(["--ckpt", str(tiny_run / "best.ckpt"), "--output", str(output),
                      *QUIET, *args]) == 0  # fmt: skip
    return checkpoint_meta(read_checkpoint(output))


def test_target_precision_is_stored_and_a_higher_one_answers_less(
    tiny_run: Path, tmp_path: Path
) -> None:
    low = calibrated(tiny_run, tmp_path / "low.ckpt", "--target-precision", "0.3")
    high = calibrated(tiny_run, tmp_path / "high.ckpt", "--target-precision", "0.9")
    for meta, target in ((low, 0.3), (high, 0.9)):
        assert meta.calibration["target_precision"] == target
        for rank, details in meta.calibration["threshold_details"].items():
            if details["reached"] and details["answered"]:
                assert details["precision"] >= target, rank
    # the first rank of the roll-up sees the same images either way: a higher target
    # needs a threshold at least as high, and answers at most as many
    first = next(iter(low.calibration["threshold_details"]))
    assert first == "species"
    assert high.thresholds[first] >= low.thresholds[first]
    answered = [m.calibration["threshold_details"][first]["answered"] for m in (low, high)]
    assert answered[0] > answered[1]


def test_config_names_the_data_to_calibrate_on(
    tiny_run: Path, prepared: Path, tmp_path: Path
) -> None:
    """The run's own config.yaml (beside the checkpoint) would calibrate on its 39
    validation images and report on its test split; this one names 24 other images."""
    folder = tmp_path / "calibration-set"
    for species in ("Aglais io", "Cydia pomonella", "Noctua pronuba", "Pieris rapae"):
        # the session's prepared folder: test_data/image_folder exists only after make demo
        images = sorted((prepared / "image_folder" / species).glob("*.jpg"))[:6]
        assert len(images) == 6, species
        (folder / species).mkdir(parents=True)
        for image in images:
            shutil.copy(image, folder / species / image.name)
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    config["data"]["source"] = {"class_path": "ImageFolder", "init_args": {"root": str(folder)}}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(config))
    meta = calibrated(tiny_run, tmp_path / "c.ckpt", "--config", str(tmp_path / "other.yaml"))
    assert meta.calibration["images"] == {"val": 24, "test": 0}
    own = yaml.safe_load((tiny_run / "config.yaml").read_text())["data"]["source"]
    assert own["init_args"].get("root") != str(folder)  # the test is not vacuous


def test_a_config_that_is_not_there_is_one_line(tiny_run: Path, tmp_path: Path, capsys) -> None:
    args = ["--ckpt", str(tiny_run / "best.ckpt"), "--output", str(tmp_path / "c.ckpt"),
            "--config", str(tmp_path / "missing.yaml")]  # fmt: skip
    assert calibrate(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"moths-calibrate: error: config {tmp_path / 'missing.yaml'} not found: "
        "pass the run's config with --config"
    )
    assert not (tmp_path / "c.ckpt").exists()


@pytest.mark.parametrize("target", ["0", "1.5"])
def test_a_target_precision_outside_0_1_is_one_line(
    tiny_run: Path, tmp_path: Path, capsys, target: str
) -> None:
    args = ["--ckpt", str(tiny_run / "best.ckpt"), "--output", str(tmp_path / "c.ckpt"),
            "--target-precision", target]  # fmt: skip
    assert calibrate(args) == 2
    assert "--target-precision must be in (0, 1]" in capsys.readouterr().err
