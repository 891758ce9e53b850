"""Who may import whom: the layers the package docstrings promise, read from the source."""

from __future__ import annotations

import pytest
from helpers.imports import imported_modules
from helpers.paths import REPO

from moths_framework.messages import one_line

TESTS = REPO / "tests"
PACKAGE = REPO / "moths_framework"


def test_test_modules_import_shared_code_from_helpers_only():
    """Not another test module, not conftest: what tests share lives in tests/helpers/.
    (tiny_backbone and training_probes are classes configs name by class_path.)"""
    local = {p.stem for p in TESTS.glob("*.py")} - {"tiny_backbone", "training_probes"}
    offenders = {
        f"{path.name} imports {module}"
        for path in [*TESTS.glob("*.py"), *TESTS.glob("helpers/*.py")]
        for module in imported_modules(path)
        if module.split(".")[0] in local | {"tests"}
    }
    assert not offenders, sorted(offenders)


@pytest.mark.parametrize("package", ["train", "sweep"])
def test_training_and_the_sweep_never_import_the_commands(package):
    """cli/ sits on top: train/ builds the runs, sweep/ builds its trials from train/."""
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / package).glob("*.py")
        for module in imported_modules(path)
        if module == "moths_framework.cli" or module.startswith("moths_framework.cli.")
    }
    assert not offenders, sorted(offenders)


def test_one_line_joins_the_message_lines_after_the_type():
    err = ValueError("bad value\n   at key data.batch_size\n\n")
    assert one_line(err) == "ValueError: bad value at key data.batch_size"
    assert one_line(KeyError()) == "KeyError"


def test_one_line_is_cut_at_its_limit():
    text = one_line(RuntimeError("x" * 5000), limit=40)
    assert len(text) == 40 and text.startswith("RuntimeError: xxx") and text.endswith("…")
