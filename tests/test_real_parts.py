"""The markers that keep honest tests honest: ``needs_real_parts`` (a skip fails under CI=true)
and ``gpu`` (deselected unless asked for); and the browser check, shown a broken page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.browser import render
from helpers.paths import REPO

TESTS = REPO / "tests"
CASES = """
    import pytest

    @pytest.mark.needs_real_parts
    def test_skipped_in_the_body():
        pytest.skip("chromium is missing")

    @pytest.mark.needs_real_parts
    @pytest.mark.skipif(True, reason="no initdb")
    def test_skipped_by_a_mark():
        pass

    @pytest.mark.needs_real_parts
    def test_without_a_database(postgres_url):
        pass

    @pytest.mark.needs_real_parts
    def test_with_its_parts():
        pass

    @pytest.mark.needs_real_parts
    @pytest.mark.xfail(reason="a known bug")
    def test_known_bug():
        assert False

    def test_skips_anywhere():
        pytest.skip("optional")
"""


def _pytest(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "MOTHS_TEST_POSTGRES_URL")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rfEs", *args],
        cwd=folder, capture_output=True, text=True, timeout=300,
        env={**base, "PYTHONPATH": str(TESTS), **env},
    )  # fmt: skip


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    """A folder with the project's tests/conftest.py and pytest settings, and CASES."""
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "test_cases.py").write_text(textwrap.dedent(CASES))
    return tmp_path


def test_needs_real_parts_skips_without_ci_and_fails_under_ci_true(cases):
    laptop = _pytest(cases, "test_cases.py")
    assert laptop.returncode == 0, laptop.stdout
    assert "1 passed, 4 skipped, 1 xfailed" in laptop.stdout

    ci = _pytest(cases, "test_cases.py", CI="true")
    assert ci.returncode == 1
    # a skip while setting up (a mark, a fixture) becomes an error, in the test a failure
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 2 errors" in ci.stdout
    assert "FAILED test_cases.py::test_skipped_in_the_body" in ci.stdout
    for name in ("skipped_by_a_mark", "without_a_database"):
        assert f"ERROR test_cases.py::test_{name}" in ci.stdout
    assert "skipped under CI=true (.ci/run provides it): chromium is missing" in ci.stdout
    assert "MOTHS_TEST_POSTGRES_URL is not set" in ci.stdout


def test_gpu_tests_are_deselected_unless_asked_for():
    cuda_tests = TESTS / "test_onnx_cuda.py"
    default = _pytest(REPO, "--collect-only", "-q", str(cuda_tests))
    assert "no tests collected (1 deselected)" in default.stdout, default.stdout[-2000:]
    ci = _pytest(REPO, "--collect-only", "-q", "-m", "not gpu", str(cuda_tests))  # make test CI=1
    assert "no tests collected (1 deselected)" in ci.stdout, ci.stdout[-2000:]
    asked = _pytest(REPO, "--collect-only", "-q", "-m", "gpu", str(cuda_tests))
    assert "1 test collected" in asked.stdout, asked.stdout[-2000:]


@pytest.mark.needs_real_parts
def test_the_browser_check_sees_what_a_reader_would(tmp_path, browser):
    broken = tmp_path / "broken.html"
    broken.write_text("<p>Moths<img src=no.png><script>console.error('drawing failed')</script>")
    problems = render(browser, broken.as_uri()).problems()
    assert "error: drawing failed" in problems
    assert any(p.startswith("image not decoded: file://") for p in problems)
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><body style='margin:0'><p hidden>Moths</body>")
    assert render(browser, blank.as_uri()).problems() == ["no visible text", "body has no height"]
    good = tmp_path / "good.html"
    good.write_text("<h1>Moths</h1>")
    assert render(browser, good.as_uri()).problems() == []
