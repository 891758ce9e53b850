"""Plugin discovery through real (fake-installed) distributions on sys.path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moths_framework import plugins
from moths_framework.cli import plugins as plugins_cli

GROUP = "moths_framework.data_sources"


def _install(site: Path, dist: str, module: str, source: str, entries: dict[str, str]) -> None:
    """Write a minimal installed distribution (dist-info + module) into ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


GOOD = """
from moths_framework.data.sources import DataSource

class Gbif(DataSource):
    def samples(self):
        return []
"""


def test_builtins_are_listed_with_their_distribution():
    found = plugins.available("data_sources")
    assert set(found) >= {"image_folder", "image_folders", "manifest"}
    info = found["image_folder"]
    assert info.distribution == "moths-framework"
    assert info.value == "moths_framework.data.sources:ImageFolder"
    assert set(plugins.available("unfreeze_policies")) >= {
        "frozen",
        "gradual",
        "milestones",
        "full",
    }
    assert "csv" in plugins.available("moths_framework.label_hierarchies")


def test_a_third_party_plugin_is_found_and_loaded_lazily(site):
    _install(site, "moths-plugin-gbif", "gbif_plugin", GOOD, {"gbif": "gbif_plugin:Gbif"})
    info = plugins.available(GROUP)["gbif"]
    assert (info.distribution, info.version) == ("moths-plugin-gbif", "1.2.3")
    import sys

    assert "gbif_plugin" not in sys.modules  # listing imports nothing
    cls = plugins.load(GROUP, "gbif")
    assert cls.__name__ == "Gbif"


def test_a_broken_plugin_is_reported_by_name_and_skipped(site):
    _install(
        site,
        "moths-plugin-bad",
        "bad_plugin",
        "raise ImportError('no libfoo')",
        {"broken": "bad_plugin:Thing"},
    )
    with pytest.raises(plugins.PluginError, match="broken.*moths-plugin-bad.*no libfoo"):
        plugins.load(GROUP, "broken")
    statuses = plugins.load_all()  # does not raise
    by_name = {s.info.name: s for s in statuses}
    assert not by_name["broken"].ok and "no libfoo" in by_name["broken"].error
    assert by_name["image_folder"].ok


def test_a_name_registered_twice_is_an_error_naming_both_distributions(site):
    _install(site, "moths-plugin-one", "one_plugin", GOOD, {"gbif": "one_plugin:Gbif"})
    _install(site, "moths-plugin-two", "two_plugin", GOOD, {"gbif": "two_plugin:Gbif"})
    with pytest.raises(plugins.PluginConflictError, match="'gbif'") as err:
        plugins.load(GROUP, "gbif")
    assert "moths-plugin-one" in str(err.value) and "moths-plugin-two" in str(err.value)
    assert "gbif" in plugins.conflicts(GROUP) and "gbif" not in plugins.available(GROUP)
    by_name = {s.info.name: s for s in plugins.load_all()}  # skips the name, does not raise
    assert not by_name["gbif"].ok and "moths-plugin-two" in by_name["gbif"].error


def test_a_name_registered_twice_breaks_only_that_name(site, capsys):
    # Issue 8 item 13: the conflict used to mark every plugin of the group as broken.
    _install(site, "moths-plugin-one", "one_plugin", GOOD, {"gbif": "one_plugin:Gbif"})
    _install(site, "moths-plugin-two", "two_plugin", GOOD, {"gbif": "two_plugin:Gbif"})
    assert plugins.load(GROUP, "image_folder").__name__ == "ImageFolder"
    assert plugins_cli.main(["--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    errors = {(r["group"], r["name"]) for r in rows if r["error"] is not None}
    assert errors == {(GROUP, "gbif")}
    assert {r["name"] for r in rows if r["group"] == GROUP} >= {"image_folder", "manifest"}


def test_unknown_names_and_groups_are_clear_errors():
    with pytest.raises(plugins.PluginError, match="did you mean image_folder"):
        plugins.load(GROUP, "image_fodler")
    with pytest.raises(plugins.PluginError, match="unknown plugin group"):
        plugins.available("backbone")


def test_moths_plugins_lists_builtins_ok(capsys):
    assert plugins_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "moths_framework.unfreeze_policies" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("gradual"))
    assert line.split()[-1] == "ok" and "moths-framework" in line


def test_moths_plugins_json_reports_broken_plugins(site, capsys):
    _install(site, "moths-plugin-bad", "bad_plugin", "1/0", {"broken": "bad_plugin:Thing"})
    assert plugins_cli.main(["--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["distribution"] == "moths-plugin-bad" and "ZeroDivisionError" in broken["error"]
    assert all(r["error"] is None for r in rows if r["distribution"] == "moths-framework")


def test_moths_plugins_new_writes_a_package_per_group(tmp_path, capsys):
    for group in ("backbones", "data_sources", "label_hierarchies", "unfreeze_policies"):
        out = tmp_path / group
        assert plugins_cli.main(["new", "gbif_x", "--group", group, "--output", str(out)]) == 0
        pyproject = (out / "pyproject.toml").read_text()
        assert f'[project.entry-points."moths_framework.{group}"]' in pyproject
        assert '"moths-framework[train]>=0.1,<0.2"' in pyproject
        compile((out / "moths_plugin_gbif_x" / "__init__.py").read_text(), group, "exec")
        assert "moths_framework.testing import check_" in (out / "tests/test_gbif_x.py").read_text()
    assert plugins_cli.main(["new", "gbif_x", "--group", "backbones", "--output", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert plugins_cli.main(["new", "Bad-Name", "--group", "backbones"]) == 2
    assert "use lower-case letters" in capsys.readouterr().err


@pytest.mark.slow
def test_a_new_plugin_passes_its_own_test_once_installed(tmp_path):
    groups = ("backbones", "data_sources", "label_hierarchies", "unfreeze_policies")
    for group in groups:
        assert (
            plugins_cli.main(
                ["new", f"new_{group}", "--group", group, "--output", str(tmp_path / group)]
            )
            == 0
        )
    site = tmp_path / "site"  # installed (not editable) into a folder of its own, not the venv
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--no-index", "--target", str(site), *(str(tmp_path / g) for g in groups)],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    tests = [str(tmp_path / g / "tests") for g in groups]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "8 passed" in run.stdout
