"""Every command in the ``console`` blocks of README.md and docs/**/*.md runs as written.

The commands are read from the documents themselves, so a command added to
any of them is run here too. Each must match a rule in :data:`RULES` (how to
run it, or why it cannot run in a test), keyed by the command alone, so moving
a section to another page changes nothing about how it runs; a command no
rule knows fails with a message to add one. They run in document order
(README.md, then docs/ sorted) in a sandbox that looks like the repository
root (``test_data`` sources, ``configs``), so nothing in the repository is
written; ``runs/<time>`` is a tiny-backbone run made for the test. The
commands that train a new run on ``configs/dev.yaml``'s real backbone are
marked slow.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from helpers.paths import REPO, TEST_DATA

README = REPO / "README.md"
DOCS = REPO / "docs"
RUN = "runs/readme"  # what runs/<time> stands for in the sandbox

# Appended to moths-fit commands that start a run: the command's own options are
# still parsed and used, the run is just short.
SHORT_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
             "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """How to treat documented commands matching ``pattern`` (a regex, searched)."""

    pattern: str
    skip: str = ""  # why it cannot run in a test
    slow: bool = False
    extra: Callable[[int], list[str]] = field(default=lambda n: [])  # appended arguments
    before: Callable[[Path], None] = field(default=lambda sandbox: None)


def _new_run_dir(n: int) -> list[str]:
    return [*SHORT_FIT, "--trainer.default_root_dir", f"runs/readme-{n}"]


def _fresh_onnx(sandbox: Path) -> None:
    (sandbox / "model.onnx").unlink(missing_ok=True)


def _an_onnx_model(sandbox: Path) -> None:
    if not (sandbox / "model.onnx").is_file():
        args = ["--onnx", "--ckpt", f"{RUN}/best.ckpt", "--output", "model.onnx"]
        assert run_console_script("moths-export", args) == 0


def _a_prediction_folder(sandbox: Path) -> None:
    if not (sandbox / RUN / "predictions" / "test" / "outputs.npz").is_file():
        args = ["--config", f"{RUN}/config.yaml", "--ckpt_path", f"{RUN}/best.ckpt"]
        assert run_console_script("moths-predict", args) == 0


RULES = [
    Rule(r"^make (demo|test)\b", skip="builds .venv and runs the whole flow or suite itself"),
    Rule(r"^make docs\b", skip="builds the site with mkdocs --strict (.ci/run runs it)"),
    Rule(r"^pip install\b", skip="needs the network"),
    Rule(r"^moths-(prepare|hierarchy|plugins)\b"),
    Rule(r"^moths-synth-frames\b"),
    Rule(r"^moths-fit .*--tune true", slow=True, extra=_new_run_dir),
    Rule(r"^moths-fit .*--ckpt_path", extra=lambda n: ["--trainer.max_epochs", "2"]),
    Rule(r"^moths-fit .*--print_config"),
    Rule(r"^moths-fit\b", slow=True, extra=_new_run_dir),  # a real backbone: 10-60 s each
    # three 1-epoch trials of dev.yaml; the report and best.yaml commands read what it wrote
    Rule(r"^moths-sweep --config", slow=True),
    Rule(r"^moths-sweep --report", slow=True),
    Rule(r"^moths-(validate|test|predict)\b"),
    Rule(r"^moths-evaluate\b", before=_a_prediction_folder),
    Rule(r"^moths-stats\b"),
    Rule(r"^moths-calibrate\b", extra=lambda n: ["--force"]),
    Rule(r"^moths-export\b", before=_fresh_onnx),
    Rule(r"^moths-infer\b", before=_an_onnx_model),
    Rule(r"^moths-zoo\b", before=_an_onnx_model),
    Rule(r"^make dist\b", skip="builds all distributions (tests/test_dist.py builds them)"),
    Rule(r"^pytest moths-plugin-", skip="needs the plugin installed (tests/test_plugins.py)"),
]


def documents() -> list[Path]:
    """The files whose commands run: README.md, then every page under docs/, sorted."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def console_commands(text: str) -> list[str]:
    """Commands of the ``console`` blocks: the ``$ `` lines of a block that has them
    (the rest is output), else every line; comments dropped."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        prompted = [line[2:] for line in lines if line.startswith("$ ")]
        for line in prompted or lines:
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def documented_commands() -> list[tuple[str, str]]:
    """(document, command) for every command of every document, in document order."""
    return [
        (doc.relative_to(REPO).as_posix(), command)
        for doc in documents()
        for command in console_commands(doc.read_text(encoding="utf-8"))
    ]


def rule_for(command: str) -> Rule | None:
    return next((rule for rule in RULES if re.search(rule.pattern, command)), None)


def run_console_script(name: str, args: list[str]) -> int:
    """Call the ``main`` of an installed console script; its exit code."""
    (script,) = entry_points(group="console_scripts", name=name) or [None]
    assert script is not None, f"{name} is not an installed console script"
    try:
        code = script.load()(args)
    except SystemExit as exit_:
        code = exit_.code
    return int(code or 0)


def _params() -> list:
    params = []
    for n, (doc, command) in enumerate(documented_commands()):
        rule = rule_for(command)
        marks = [pytest.mark.slow] if rule is not None and rule.slow else []
        params.append(pytest.param(n, command, id=f"{n}:{doc}:{command[:60]}", marks=marks))
    return params


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, tiny_run) -> Path:
    """A folder laid out like the repository root, with a prepared test_data and a run."""
    root = tmp_path_factory.mktemp("readme")
    (root / "test_data").mkdir()
    for name in ("source_a", "source_b", "hierarchy.csv"):
        (root / "test_data" / name).symlink_to(TEST_DATA / name)
    (root / "configs").symlink_to(REPO / "configs")
    from moths_framework.data.prepare import prepare_sources

    prepare_sources(root / "test_data", [TEST_DATA / "source_a", TEST_DATA / "source_b"],
                    progress=False)  # fmt: skip
    run = root / RUN
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["trainer"]["default_root_dir"] = RUN
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(TEST_DATA / "source_a" / "Aglais io" / "1.jpg", photos / "a.jpg")
    shutil.copy(TEST_DATA / "source_b" / "Pieris rapae" / "3.png", photos / "b.png")
    shutil.copy(TEST_DATA / "source_a" / "Aglais io" / "2.jpg", root / "more.jpg")
    (root / "list.txt").write_text("# one photo\nphotos/a.jpg\n")
    return root


@pytest.mark.parametrize(("n", "command"), _params())
def test_readme_command_runs_as_written(n, command, sandbox, monkeypatch):
    rule = rule_for(command)
    if rule is None:
        pytest.fail(
            f"documented command {command!r} has no rule in tests/test_readme_commands.py RULES: "
            "add one saying how to run it (or why it cannot run in a test)"
        )
    if rule.skip:
        pytest.skip(rule.skip)
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("MOTHS_CACHE", str(sandbox / ".cache"))  # the zoo cache
    rule.before(sandbox)
    name, *args = shlex.split(command.replace("runs/<time>", RUN))
    assert run_console_script(name, [*args, *rule.extra(n)]) == 0, command


def test_the_documents_have_commands_and_every_rule_is_used():
    commands = [command for _, command in documented_commands()]
    assert any(c.startswith("moths-fit") for c in commands)
    assert any(c.startswith("make demo") for c in console_commands(README.read_text("utf-8")))
    unused = [
        rule.pattern for rule in RULES if not any(re.search(rule.pattern, c) for c in commands)
    ]
    assert not unused, f"rules that match no documented command (remove them): {unused}"
