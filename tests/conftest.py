"""Shared fixtures. Nothing here reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "test_data"

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """test_data's two sources prepared once per session: ``<dir>/manifest.csv``."""
    from moths_framework.data.prepare import prepare_sources

    out = tmp_path_factory.mktemp("prepared")
    prepare_sources(out, [TEST_DATA / "source_a", TEST_DATA / "source_b"], progress=False)
    return out


def tiny_fit_args(run_dir: Path, manifest: Path, *extra: str) -> list[str]:
    """moths-fit arguments: configs/dev.yaml with the tiny test backbone, fast settings."""
    return [
        "--config", str(REPO / "configs" / "dev.yaml"),
        "--model.backbone", "tiny_backbone.TinyCNN",
        "--model.preprocessing.input_size", "[32, 32]",
        "--data.source.init_args.path", str(manifest),
        "--data.hierarchy.init_args.path", str(TEST_DATA / "hierarchy.csv"),
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


FAST_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2"]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, prepared) -> Path:
    """One fast tiny-backbone moths-fit run per session: best.ckpt, last.ckpt, config.yaml.

    Shared: copy it (``shutil.copytree``) before running anything that writes into it.
    """
    from moths_framework.cli.fit import main as fit

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST_FIT)) == 0
    return run
