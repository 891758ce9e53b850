"""moths-fit arguments for fast runs on test_data with the tiny test backbone."""

from __future__ import annotations

from pathlib import Path

from helpers.paths import REPO, TEST_DATA


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
