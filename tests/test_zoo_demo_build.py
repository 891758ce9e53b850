"""``python zoo/build_demo.py`` rebuilds the demo model deterministically (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_build_demo_twice_writes_the_same_files(tmp_path):
    from moths_framework.data.prepare import prepare_sources

    # what the script's docstring asks for first: moths-prepare test_data/ test_data/source_*
    sources = [REPO / "test_data" / "source_a", REPO / "test_data" / "source_b"]
    prepare_sources(REPO / "test_data", sources, progress=False)
    indexes = []
    for name in ("a", "b"):
        index = tmp_path / name
        script = str(REPO / "zoo" / "build_demo.py")
        subprocess.run([sys.executable, script, "--index", str(index)], check=True, cwd=REPO)
        indexes.append(json.loads((index / "index.json").read_text()))
    assert indexes[0] == indexes[1]  # same sha256 for the ONNX file and the checkpoint
    card = (tmp_path / "a" / "nl-moths-demo" / "README.md").read_text()
    assert card == (tmp_path / "b" / "nl-moths-demo" / "README.md").read_text()
