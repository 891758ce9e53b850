"""Plugin discovery through real (fake-installed) distributions on sys.path."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

from moths_framework import plugins
from moths_framework.cli import plugins as plugins_cli
from moths_framework.plugin_scaffold import Template
from moths_framework.testing import ContractError, check_plugin

GROUP = "moths_framework.data_sources"
REPO = Path(__file__).resolve().parents[1]


def _install(
    site: Path, dist: str, module: str, source: str, entries: dict[str, str], group: str = GROUP
) -> None:
    """Write a minimal installed distribution (dist-info + module) into ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")


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


def test_moths_plugins_new_writes_a_package_per_group(tmp_path, capsys, monkeypatch):
    for row in plugins.GROUPS:
        out = tmp_path / row.name
        assert plugins_cli.main(["new", "gbif_x", "--group", row.name, "--output", str(out)]) == 0
        pyproject = (out / "pyproject.toml").read_text()
        assert f'[project.entry-points."moths_framework.{row.name}"]' in pyproject
        assert '"moths-framework[train]>=0.1,<0.2"' in pyproject
        compile((out / "moths_plugin_gbif_x" / "__init__.py").read_text(), row.name, "exec")
        test = (out / "tests/test_gbif_x.py").read_text()
        check = row.check.rpartition(":")[2]
        assert f"from moths_framework.testing import {check}\n" in test
        assert f"    {check}(GbifX{row.scaffold_template().suffix}" in test
        # Its contract test passes as written (the slow test below also installs it).
        monkeypatch.syspath_prepend(str(out))
        namespace: dict = {}
        exec(compile(test, str(out / "tests/test_gbif_x.py"), "exec"), namespace)
        contract = namespace["test_follows_the_contract"]
        (tmp_path / f"{row.name}_run").mkdir()
        contract(*[tmp_path / f"{row.name}_run"][: contract.__code__.co_argcount])
        del sys.modules["moths_plugin_gbif_x"]
    assert plugins_cli.main(["new", "gbif_x", "--group", "backbones", "--output", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert plugins_cli.main(["new", "Bad-Name", "--group", "backbones"]) == 2
    assert "use lower-case letters" in capsys.readouterr().err


@pytest.mark.slow
def test_a_new_plugin_passes_its_own_test_once_installed(tmp_path):
    groups = [row.name for row in plugins.GROUPS]
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
    assert f"{2 * len(groups)} passed" in run.stdout


def _yaml_at(key: str, value: object) -> str:
    """A YAML config with ``value`` at the dotted ``key``."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return yaml.safe_dump(value)


def test_each_group_row_resolves_and_its_yaml_key_is_where_the_configs_name_it():
    def read(names):
        return [yaml.safe_load((REPO / "configs" / n).read_text()) for n in names]

    classifier_configs = read(["dev.yaml", "default.yaml"])
    # A detector trains from configs of its own, which name no classifier part, and back.
    detector_configs = read(sorted(p.name for p in (REPO / "configs").glob("detector*.yaml")))
    assert detector_configs
    assert not any("detector" in c["model"] for c in classifier_configs)
    assert not any("backbone" in c["model"] or "unfreeze" in c for c in detector_configs)
    for row in plugins.GROUPS:
        assert row.entry_point_group == f"moths_framework.{row.name}"
        assert isinstance(row.base_class(), type)
        assert row.contract_check() is getattr(
            importlib.import_module("moths_framework.testing"), row.check.rpartition(":")[2]
        )
        assert isinstance(row.scaffold_template(), Template)
        assert plugins.plugin_group(row.entry_point_group) is row
        configs = detector_configs if row.name == "detectors" else classifier_configs
        for config in configs:
            node = config
            for part in row.yaml_key.split("."):
                node = node[part]
            assert "class_path" in node, (row.name, row.yaml_key)


def test_the_plugin_table_imports_no_torch():
    code = (
        "import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
        "from moths_framework import plugins, plugin_scaffold\n"
        "from moths_framework.cli import plugins as cli\n"
        "print(sorted(plugins.available('backbones')), [g.yaml_key for g in plugins.GROUPS])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "model.backbone" in run.stdout


def test_each_listed_class_path_resolves_when_written_in_yaml(capsys):
    assert plugins_cli.main([]) == 0
    table = capsys.readouterr().out
    assert plugins_cli.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["group"] for r in rows} == {row.entry_point_group for row in plugins.GROUPS}
    for r in rows:
        assert f"  {r['class_path']}  " in table
        row = plugins.plugin_group(r["group"])
        parser = ArgumentParser(exit_on_error=False)  # how LightningCLI reads row.yaml_key
        parser.add_argument(f"--{row.yaml_key}", type=row.base_class())
        # Validation would ask for init_args the plugin requires (a path, a model name).
        config = _yaml_at(row.yaml_key, {"class_path": r["class_path"]})
        parsed = parser.parse_string(config, _skip_validation=True)[row.yaml_key].class_path
        # The full path imports by itself; a short class name resolves only once imported.
        module, _, name = r["class_path"].rpartition(".")
        loaded = plugins.load(r["group"], r["name"])
        assert getattr(importlib.import_module(module), name) is loaded
        module, _, name = parsed.rpartition(".")
        assert getattr(importlib.import_module(module), name) is loaded


TRACKERS = '''
from moths_framework.plugin_scaffold import Template
from moths_framework.testing.contract import build_plugin, require, run_clauses


class Tracker:
    def tracks(self):
        raise NotImplementedError


def check_tracker(plugin, /, **init_args):
    tracker = build_plugin(plugin, "trackers", init_args)
    clauses = {"tracks() is a list": lambda t: require(isinstance(t.tracks(), list), "not a list")}
    run_clauses(tracker, "tracker", clauses)


TEMPLATE = Template(suffix="Tracker", code="""
    from trackers_core import Tracker


    class {cls}(Tracker):
        def tracks(self):
            return []
""")


class Sort(Tracker):
    def tracks(self):
        return ()
'''


def test_a_new_group_is_one_row(site, monkeypatch, capsys):
    _install(site, "trackers-core", "trackers_core", TRACKERS, {}, "other")
    _install(site, "moths-plugin-sort", "sort", "from trackers_core import Sort",
             {"sort": "sort:Sort"}, "moths_framework.trackers")  # fmt: skip
    row = plugins.PluginGroup(
        name="trackers",
        base="trackers_core:Tracker",
        yaml_key="track.tracker",
        check="trackers_core:check_tracker",
        template="trackers_core:TEMPLATE",
    )
    monkeypatch.setattr(plugins, "GROUPS", (*plugins.GROUPS, row))
    assert plugins.available("trackers")["sort"].class_path == "sort.Sort"
    assert plugins_cli.main([]) == 0
    out = capsys.readouterr().out
    assert "moths_framework.trackers (1), YAML key track.tracker" in out
    assert "sort.Sort" in out
    with pytest.raises(ContractError, match=r"(?s)Sort breaks 1 of 1 tracker .*not a list"):
        check_plugin("trackers", plugins.load("trackers", "sort"))

    out = site / "new"
    assert plugins_cli.main(["new", "iou", "--group", "trackers", "--output", str(out)]) == 0
    assert (
        '[project.entry-points."moths_framework.trackers"]' in (out / "pyproject.toml").read_text()
    )
    test = (out / "tests" / "test_iou.py").read_text()
    assert "from trackers_core import check_tracker" in test
    assert "check_tracker(IouTracker)" in test
    monkeypatch.syspath_prepend(str(out))
    check_plugin("trackers", importlib.import_module("moths_plugin_iou").IouTracker)


def test_a_bad_class_path_under_a_plugin_key_lists_that_groups_plugins():
    from moths_framework.cli.lightning import _config_error

    for row in plugins.GROUPS:
        err = ValueError(f'Parser key "{row.yaml_key}":\n  Problem with given class_path Nope')
        message = _config_error("fit", err)
        assert f"installed {row.name.replace('_', ' ')}: " in message
        assert message.count("installed ") == 1
