"""Shared fixtures. Nothing here reaches the network. Shared functions and constants
live in ``helpers/``: test modules import those, never this file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.browser import find_chromium
from helpers.fit_args import FAST_FIT, tiny_fit_args
from helpers.image_host import ImageHost
from helpers.paths import TEST_DATA

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under CI=true a test marked ``needs_real_parts`` that skips fails: CI provides them."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("CI") == "true"
        and item.get_closest_marker("needs_real_parts")
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"needs_real_parts, skipped under CI=true (.ci/run provides it): {reason}"
    return report


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium driven by Playwright: the distribution's chromium (.ci/run installs it)."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("no headless chromium here (chromium, chromium-browser or google-chrome)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL database: MOTHS_TEST_POSTGRES_URL (.ci/run starts a temporary cluster)."""
    url = os.environ.get("MOTHS_TEST_POSTGRES_URL", "")
    if not url:
        pytest.skip("no PostgreSQL here: MOTHS_TEST_POSTGRES_URL is not set")
    return url


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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, prepared) -> Path:
    """One fast tiny-backbone moths-fit run per session: best.ckpt, last.ckpt, config.yaml.

    Shared: copy it (``shutil.copytree``) before running anything that writes into it.
    """
    from moths_framework.cli.fit import main as fit

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    assert fit(tiny_fit_args(run, prepared / "manifest.csv", *FAST_FIT)) == 0
    return run


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ONNX classifier moths-serve's tests serve: ``<dir>/tiny-moths.onnx``."""
    from helpers.onnx_models import export_model, metadata, tiny_net  # torch: only when asked

    return export_model(
        tiny_net(), tmp_path_factory.mktemp("serve") / "tiny-moths.onnx", metadata()
    )


@pytest.fixture(scope="session")
def serve_model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model moths-serve's tests serve, ``<dir>/tiny-moths.onnx``: the tiny backbone
    on a checklist of 2,700 species, four ranks (``helpers.checklist_model``)."""
    from helpers.checklist_model import export_checklist_model  # torch: only when asked

    return export_checklist_model(tmp_path_factory.mktemp("serve") / "tiny-moths.onnx")


@pytest.fixture(scope="module")
def host() -> Iterator[ImageHost]:
    """A loopback image server per test module; ``host.add(path, data)`` returns its URL."""
    images = ImageHost()
    yield images
    images.close()
