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
