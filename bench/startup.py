"""Benchmark start-up: how long each command takes to answer ``--help``.

Each command runs ``--rounds`` times as its console script, in a fresh process,
and the median is kept of three figures: the wall-clock time, the CPU time of the
process (user + system: what the start-up costs, less disturbed than the wall
clock when other jobs share the machine) and the import time Python reports
(``-X importtime``: the sum of every module's own time). Before any change, on the
2-core development machine, ``moths-fit --help`` took 5.4 s.

The LightningCLI commands (moths-fit, moths-predict) are timed twice: building the
parser (``MOTHS_NO_HELP_CACHE=1``, what the first ``--help`` after an install costs)
and answered from the help cache (a temporary ``MOTHS_CACHE``, filled by one run
first); every other command builds its parser each time. ``--parser-only`` skips
the cached runs (to time a checkout from before the cache, through ``PYTHONPATH``).

Run: ``.venv/bin/python bench/startup.py [--rounds 5] [--commands fit predict ...]``.
The last line printed is the result:
``startup: moths-fit --help X s from the cache, Y s building the parser (was 5.4 s)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
WAS_S = 5.4  # moths-fit --help, measured before the imports were made lazy
NO_CACHE = {"MOTHS_NO_HELP_CACHE": "1"}
# (label, console script, arguments); the detector's help reads its config.
COMMANDS = {
    "fit": ("moths-fit --help", "moths-fit", ["--help"]),
    "fit-detector": (
        "moths-fit --config configs/detector-dev.yaml --help",
        "moths-fit",
        ["--config", "configs/detector-dev.yaml", "--help"],
    ),
    "predict": ("moths-predict --help", "moths-predict", ["--help"]),
    "calibrate": ("moths-calibrate --help", "moths-calibrate", ["--help"]),
    "sweep": ("moths-sweep --help", "moths-sweep", ["--help"]),
    "export": ("moths-export --help", "moths-export", ["--help"]),
    "infer": ("moths-infer --help", "moths-infer", ["--help"]),
    "serve": ("moths-serve --help", "moths-serve", ["--help"]),
}
CACHED = ("fit", "fit-detector", "predict")  # the LightningCLI commands: a help cache


def _run_once(script: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run of ``script args``."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run([str(BIN / script), *args], check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def import_seconds(script: str, args: list[str], env: dict[str, str]) -> float:
    """The sum of every module's own import time (``-X importtime``) in one run (``-P``:
    the modules come from where the console script takes them, not the working folder)."""
    code = (
        "import sys; from importlib.metadata import entry_points; "
        f"(ep,) = entry_points(group='console_scripts', name={script!r}); "
        f"sys.argv = [{script!r}, *{args!r}]; sys.exit(ep.load()())"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-X", "importtime", "-c", code],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    total_us = 0
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            total_us += int(line.split("|")[0].split(":")[1])
    return total_us / 1e6


def measure(
    script: str, args: list[str], rounds: int, env: dict[str, str]
) -> tuple[float, float, float]:
    """Median wall, CPU and import seconds of ``rounds`` runs in ``env``."""
    runs = [_run_once(script, args, env) for _ in range(rounds)]
    imports = [import_seconds(script, args, env) for _ in range(rounds)]
    return (
        statistics.median(w for w, _ in runs),
        statistics.median(c for _, c in runs),
        statistics.median(imports),
    )


def measure_cached(script: str, args: list[str], rounds: int) -> tuple[float, float, float]:
    """:func:`measure` with a help cache of its own, each way of running filled first."""
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k not in NO_CACHE}
        env["MOTHS_CACHE"] = cache
        _run_once(script, args, env)
        import_seconds(script, args, env)  # another sys.path: another key
        return measure(script, args, rounds, env)


def result_line(fit_cached: float | None, fit_parser: float) -> str:
    cached = f"{fit_cached:.2f} s from the cache, " if fit_cached is not None else ""
    built = f"{fit_parser:.1f} s building the parser"
    return f"startup: moths-fit --help {cached}{built} (was {WAS_S} s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--parser-only", action="store_true", help="no runs from the help cache")
    opts = parser.parse_args(argv)
    fit: dict[str, float] = {}
    for key in opts.commands:
        label, script, args = COMMANDS[key]
        modes = ["parser"] if opts.parser_only or key not in CACHED else ["parser", "cached"]
        for mode in modes:
            if mode == "parser":
                wall, cpu, imports = measure(script, args, opts.rounds, {**os.environ, **NO_CACHE})
            else:
                wall, cpu, imports = measure_cached(script, args, opts.rounds)
            shown = f"{label} ({mode})" if key in CACHED else label
            print(f"  {shown:<66} wall {wall:.2f} s, CPU {cpu:.2f} s, imports {imports:.2f} s")
            if key == "fit":
                fit[mode] = wall
    if "parser" in fit:
        print(result_line(fit.get("cached"), fit["parser"]))


if __name__ == "__main__":
    main()
