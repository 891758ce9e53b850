"""moths-predict --split by its effect: the rows are exactly the images the run's
split.csv puts in that split (every image for ``all``)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from moths_framework.cli.predict import main as predict


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("split", ["val", "train", "all"])
def test_split_predicts_exactly_the_images_of_that_split(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "best.ckpt"),
            "--split", split, "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert predict(args) == 0
    out = run / "predictions" / split
    images = [row["path"] for row in read(run / "split.csv") if split in (row["phase"], "all")]
    rows = read(out / "predictions.csv")
    assert sorted(row["path"] for row in rows) == sorted(images)
    assert len(rows) == len(images) and not any(row["error"] for row in rows)
    assert f"{len(images)} images of split {split!r}" in capsys.readouterr().out
