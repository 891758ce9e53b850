"""Start-up: ``--help`` imports only what building the parser needs.

moths-fit's help is LightningCLI's parser, so it needs torch and Lightning; it
must not also pay for what only a run uses (timm and its wandb and Hugging Face
hub imports, ONNX, ONNX Runtime, TensorBoard). moths-export's help needs no torch
at all. Checked in a fresh process, by the modules loaded, not by the clock, with
the help cache off (tests/test_help_cache.py tests the cache, which imports neither).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from helpers.bench_scripts import load_bench
from helpers.paths import REPO

# Run by the fresh process: the console script's main on the arguments; prints what it
# printed, its exit code and every module loaded, as JSON.
HELP_RUN = """
import contextlib, io, json, sys
from importlib.metadata import entry_points
(script,) = entry_points(group="console_scripts", name=sys.argv[1])
printed, code = io.StringIO(), None
with contextlib.redirect_stdout(printed):
    try:
        code = script.load()(sys.argv[2:])
    except SystemExit as exit_:
        code = exit_.code
print(json.dumps({"code": code, "help": printed.getvalue(), "modules": sorted(sys.modules)}))
"""
ONLY_FOR_A_RUN = ("timm", "wandb", "huggingface_hub", "onnx", "onnxruntime", "tensorboard",
                  "tensorboardX")  # fmt: skip


def help_run(script: str, *args: str) -> tuple[str, set[str]]:
    """What ``script args`` prints, and the modules the process loaded (each by its
    full name and its top-level package's)."""
    result = subprocess.run(
        [sys.executable, "-c", HELP_RUN, script, *args],
        cwd=REPO, capture_output=True, text=True, check=True,
        # no line breaks inside what is looked for; the parser built, not a cached text
        env={**os.environ, "COLUMNS": "1000", "MOTHS_NO_HELP_CACHE": "1"},
    )  # fmt: skip
    answer = json.loads(result.stdout)
    assert answer["code"] in (0, None), result.stderr
    modules = answer["modules"]
    return answer["help"], {m.split(".")[0] for m in modules} | set(modules)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        # Every backbone plugin is listed, and where a detector's options are.
        (["--help"], ["moths_plugin_timm.TimmBackbone", "configs/detector-dev.yaml --help"]),
        (["--config", "configs/detector-dev.yaml", "--help"], ["--model.detector DETECTOR"]),
    ],
    ids=["classifier", "detector"],
)
def test_fit_help_loads_lightning_but_nothing_only_a_run_needs(args, shown):
    text, loaded = help_run("moths-fit", *args)
    assert all(words in text for words in shown), shown
    assert "lightning" in loaded  # the parser is LightningCLI's: the check can see imports
    found = loaded & set(ONLY_FOR_A_RUN)
    assert not found, sorted(found)


def test_export_help_loads_no_torch():
    text, loaded = help_run("moths-export", "--help")
    assert "--ckpt" in text
    found = loaded & {"torch", "lightning", "onnx", "onnxruntime"}
    assert not found, sorted(found)


def test_the_startup_bench_times_each_help_and_counts_its_imports(capsys):
    startup = load_bench("startup")
    startup.main(["--rounds", "1", "--commands", "export", "serve"])
    lines = capsys.readouterr().out.splitlines()
    for line, command in zip(lines, ("moths-export", "moths-serve"), strict=True):
        assert re.fullmatch(
            rf"  {command} --help +wall \d+\.\d\d s, CPU \d+\.\d\d s, imports \d+\.\d\d s", line
        )
        assert float(line.rsplit("imports ", 1)[1].split()[0]) > 0  # -X importtime was read
    assert startup.result_line(0.094, 6.23) == (
        "startup: moths-fit --help 0.09 s from the cache, 6.2 s building the parser (was 5.4 s)"
    )
    assert startup.result_line(None, 6.23) == (
        "startup: moths-fit --help 6.2 s building the parser (was 5.4 s)"
    )
