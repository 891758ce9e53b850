"""Plugin discovery through real (fake-installed) distributions on sys.path."""

from __future__ import annotations

import json
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
