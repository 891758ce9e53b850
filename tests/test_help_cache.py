"""The help cache: a LightningCLI command's ``--help`` printed again without importing torch.

The end-to-end tests run the console scripts in fresh processes against the parser's
own output (``MOTHS_NO_HELP_CACHE=1``); the others drive
:func:`~moths_framework.cli.help_cache.answer_help` with a stand-in for the parser.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.paths import REPO

from moths_framework.cli.help_cache import NO_HELP_CACHE_ENV, answer_help, help_key
from moths_framework.user_cache import CACHE_ENV, cache_root

BIN = Path(sys.executable).parent
DETECTOR_CONFIG = REPO / "configs" / "detector-dev.yaml"


def _help(cache: Path, *args: str, cached: bool = True, site: Path | None = None):
    """``moths-fit args`` in a fresh process: (the bytes it printed, whether it imported
    Lightning, read from ``-X importtime``'s report)."""
    env = {k: v for k, v in os.environ.items() if k != NO_HELP_CACHE_ENV}
    env.update({CACHE_ENV: str(cache), "COLUMNS": "1000", "PYTHONPROFILEIMPORTTIME": "1"})
    if not cached:
        env[NO_HELP_CACHE_ENV] = "1"
    if site is not None:
        env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [str(BIN / "moths-fit"), *args], cwd=REPO, env=env, capture_output=True, check=True
    )
    imported = re.search(rb"\| +lightning\.pytorch$", result.stderr, re.MULTILINE) is not None
    return result.stdout, imported


def _help_again(cache: Path, *args: str, site: Path | None = None):
    """:func:`_help` a second time; once more if the first was not answered from the
    cache, as an edit to the source between two runs (a shared working tree) rightly
    changes the key."""
    printed, imported = _help(cache, *args, site=site)
    return _help(cache, *args, site=site) if imported else (printed, imported)


def _kept(cache: Path) -> list[Path]:
    return sorted((cache / "help").glob("*.txt"))


def test_the_cached_help_is_the_parsers_byte_for_byte_and_imports_no_lightning(tmp_path):
    parser_text, imported = _help(tmp_path, "--help", cached=False)
    assert imported and parser_text.startswith(b"usage: moths-fit")
    assert not _kept(tmp_path)  # MOTHS_NO_HELP_CACHE=1 writes nothing
    first, imported = _help(tmp_path, "--help")
    assert imported and first == parser_text
    assert len(_kept(tmp_path)) == 1
    again, imported = _help_again(tmp_path, "--help")
    assert not imported, "answered from the cache, yet Lightning was imported"
    assert again == parser_text


def test_a_config_that_changed_is_read_again_not_answered_from_the_cache(tmp_path):
    config = tmp_path / "run.yaml"
    # A classifier's options, the modules it names the detector's config's: only its
    # content tells the two apart.
    config.write_text(
        "model:\n  backbone: null\n  optimizer:\n    class_path: torch.optim.AdamW\n"
        "trainer:\n  logger:\n    - class_path: lightning.pytorch.loggers.CSVLogger\n"
    )
    classifier, _ = _help(tmp_path, "--config", str(config), "--help")
    assert b"--model.backbone BACKBONE" in classifier
    assert b"--model.detector" not in classifier
    before = config.stat()
    shutil.copyfile(DETECTOR_CONFIG, config)
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))  # same time, new content
    detector, imported = _help(tmp_path, "--config", str(config), "--help")
    assert imported, "the changed config was answered from the cache"
    assert b"--model.detector DETECTOR" in detector


@pytest.mark.slow
def test_installing_or_removing_a_plugin_rebuilds_the_help(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    (site / "hc_source_plugin.py").write_text(
        textwrap.dedent("""
        from moths_framework.data.sources import DataSource

        class GbifSource(DataSource):
            def samples(self):
                return []
        """)
    )
    without, _ = _help(cache, "--help", site=site)
    assert b"hc_source_plugin.GbifSource" not in without
    info = site / "moths_plugin_hc-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: moths-plugin-hc\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[moths_framework.data_sources]\ngbif = hc_source_plugin:GbifSource\n"
    )
    installed, imported = _help(cache, "--help", site=site)
    assert imported and b"hc_source_plugin.GbifSource" in installed
    assert installed == _help(cache, "--help", site=site, cached=False)[0]
    shutil.rmtree(info)
    removed, imported = _help_again(cache, "--help", site=site)
    assert not imported and removed == without  # the first text, under its key


# answer_help with a stand-in for the parser


class Parser:
    """Prints a help text and exits 0 (what LightningCLI does for --help), or runs."""

    def __init__(self, text: str = "usage: moths-fit [-h]\n\nthe options\n") -> None:
        self.text, self.calls = text, 0

    def __call__(self, args: list[str]):
        def build() -> int:
            self.calls += 1
            if "--help" in args or "-h" in args:
                print(self.text, end="")
                raise SystemExit(0)
            print("ran")
            return 0

        return build


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(NO_HELP_CACHE_ENV, raising=False)
    return tmp_path / "cache"


def _answer(parser: Parser, args: list[str], capsys) -> tuple[int | None, str]:
    try:
        code = answer_help("moths-fit", args, parser(args))
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().out


def test_a_second_help_is_printed_from_the_cache_and_exits_0(cache, capsys):
    parser = Parser()
    assert _answer(parser, ["--help"], capsys) == (0, parser.text)
    assert _answer(parser, ["--help"], capsys) == (0, parser.text)
    assert parser.calls == 1
    assert _answer(parser, ["-h"], capsys) == (0, parser.text)  # other arguments, other key
    assert parser.calls == 2


def test_no_cache_when_turned_off_or_when_not_a_help(cache, capsys, monkeypatch):
    parser = Parser()
    for args in (["--print_config"], ["--config", "x.yaml"], ["--trainer.max_epochs", "3"]):
        assert _answer(parser, args, capsys) == (0, "ran\n")
        assert _answer(parser, args, capsys) == (0, "ran\n")
    assert parser.calls == 6 and not cache.exists()
    monkeypatch.setenv(NO_HELP_CACHE_ENV, "1")
    _answer(parser, ["--help"], capsys)
    _answer(parser, ["--help"], capsys)
    assert parser.calls == 8 and not cache.exists()


def test_a_failed_help_or_other_output_is_not_kept(cache, capsys):
    def failing() -> int:
        print("usage: moths-fit [-h]")
        raise SystemExit(2)

    with pytest.raises(SystemExit):
        answer_help("moths-fit", ["--help"], failing)
    not_usage = Parser("Traceback: not a help text\n")
    _answer(not_usage, ["--help"], capsys)
    _answer(not_usage, ["--help"], capsys)
    assert not_usage.calls == 2 and not list(cache.glob("help/*.txt"))


def test_a_cache_folder_that_cannot_be_written_is_passed_over(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    monkeypatch.delenv(NO_HELP_CACHE_ENV, raising=False)
    parser = Parser()
    assert _answer(parser, ["--help"], capsys) == (0, parser.text)
    assert _answer(parser, ["--help"], capsys) == (0, parser.text)
    assert parser.calls == 2


def test_the_cache_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert cache_root() == tmp_path / "moths-framework"


# the key


def test_the_key_changes_with_each_input_the_text_depends_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "my_models.py"  # a module a class_path names, not installed
    local.write_text("class Net: ...\n")
    nested = tmp_path / "optim.yaml"
    nested.write_text("lr: 0.1\n")
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  net: my_models.Net\n  optim: optim.yaml\n")
    site = tmp_path / "site"
    (site / "moths_plugin_x-1.0.dist-info").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(site))
    args = ["--config", "run.yaml", "--help"]
    keys = [help_key("moths-fit", args)]
    assert help_key("moths-fit", args) == keys[0]  # nothing changed, same key

    def changed() -> bool:
        keys.append(help_key("moths-fit", args))
        return keys[-1] not in keys[:-1]

    def rewrite(path: Path, text: str) -> None:  # same size, same modification time
        before = path.stat()
        path.write_text(text)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    rewrite(config, config.read_text().replace("Net", "Nex"))
    assert changed(), "the config's content"
    rewrite(nested, "lr: 0.2\n")
    assert changed(), "a file the config names"
    local.write_text("class Net:\n    '''A net.'''\n")
    assert changed(), "a module a class_path names"
    (site / "moths_plugin_x-1.0.dist-info").rename(site / "moths_plugin_x-1.1.dist-info")
    assert changed(), "an installed distribution's version"
    monkeypatch.setenv("COLUMNS", "123")
    assert changed(), "the terminal width"
    monkeypatch.setenv("JSONARGPARSE_DEFAULT_ENV", "true")
    assert changed(), "jsonargparse's environment"
    assert help_key("moths-test", args) not in keys, "the command"
    assert help_key("moths-fit", ["--help", "--config", "run.yaml"]) not in keys, "the order"
