"""The layers that run without torch stay so: zoo/ resolves, inference/ answers,
evaluate/ scores, and the checkpoint module sits below the LightningModule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.imports import imported_modules

PACKAGE = Path(__file__).resolve().parents[1] / "moths_framework"
FORBIDDEN = ("torch", "lightning", "moths_framework.model", "moths_framework.export",
             "moths_framework.cli", "moths_framework.train", "moths_framework.data")  # fmt: skip


@pytest.mark.parametrize("package", ["zoo", "inference", "evaluate"])
def test_torch_free_packages_import_no_torch_nor_the_training_side(package):
    offenders = sorted(
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / package).glob("*.py")
        for module in imported_modules(path)
        if any(module == f or module.startswith(f"{f}.") for f in FORBIDDEN)
    )
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("moths_framework.zoo", "torch"),
        ("moths_framework.cli.zoo", "torch"),
        ("moths_framework.export.zoo_entry", "torch"),
        ("moths_framework.evaluate.evaluation", "torch"),
        ("moths_framework.model.checkpoint", "moths_framework.model.lightning"),
        ("moths_framework.model.checkpoint", "lightning"),
    ],
)
def test_import_boundaries(module, absent):
    code = f"import sys, {module}; sys.exit({absent!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} -> {absent}"
