"""Benchmark start-up: how long each command takes to answer ``--help``.

Each command runs ``--rounds`` times as its console script, in a fresh process,
and the median is kept of three figures: the wall-clock time, the CPU time of the
process (user + system: what the start-up costs, less disturbed than the wall
clock when other jobs share the machine) and the import time Python reports
(``-X importtime``: the sum of every module's own time). Before any change, on the
2-core development machine, ``moths-fit --help`` took 5.4 s.

Run: ``.venv/bin/python bench/startup.py [--rounds 5] [--commands fit predict ...]``.
The last line printed is the result: ``startup: moths-fit --help X s (was 5.4 s)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
WAS_S = 5.4  # moths-fit --help, measured before the imports were made lazy
# (label, console script, arguments); the detector's help reads its config.
COMMANDS = {
    "fit": ("moths-fit --help", "moths-fit", ["--help"]),
    "fit-detector": (
        "moths-fit --config configs/detector-dev.yaml --help",
        "moths-fit",
        ["--config", "configs/detector-dev.yaml", "--help"],
    ),
    "predict": ("moths-predict --help", "moths-predict", ["--help"]),
    "export": ("moths-export --help", "moths-export", ["--help"]),
    "infer": ("moths-infer --help", "moths-infer", ["--help"]),
    "serve": ("moths-serve --help", "moths-serve", ["--help"]),
}


def _run_once(script: str, args: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one run of ``script args``."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run([str(BIN / script), *args], check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return wall, cpu


def import_seconds(script: str, args: list[str]) -> float:
    """The sum of every module's own import time (``-X importtime``) in one run (``-P``:
    the modules come from where the console script takes them, not the working folder)."""
    code = (
        "import sys; from importlib.metadata import entry_points; "
        f"(ep,) = entry_points(group='console_scripts', name={script!r}); "
        f"sys.argv = [{script!r}, *{args!r}]; sys.exit(ep.load()())"
    )
    result = subprocess.run(
        [sys.executable, "-P", "-X", "importtime", "-c", code], capture_output=True, text=True
    )
    total_us = 0
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            total_us += int(line.split("|")[0].split(":")[1])
    return total_us / 1e6


def measure(script: str, args: list[str], rounds: int) -> tuple[float, float, float]:
    """Median wall, CPU and import seconds of ``rounds`` runs."""
    runs = [_run_once(script, args) for _ in range(rounds)]
    imports = [import_seconds(script, args) for _ in range(rounds)]
    return (
        statistics.median(w for w, _ in runs),
        statistics.median(c for _, c in runs),
        statistics.median(imports),
    )


def result_line(fit_wall: float) -> str:
    return f"startup: moths-fit --help {fit_wall:.1f} s (was {WAS_S} s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    opts = parser.parse_args(argv)
    fit = None
    for key in opts.commands:
        label, script, args = COMMANDS[key]
        wall, cpu, imports = measure(script, args, opts.rounds)
        print(f"  {label:<56} wall {wall:.2f} s, CPU {cpu:.2f} s, imports {imports:.2f} s")
        if key == "fit":
            fit = wall
    if fit is not None:
        print(result_line(fit))


if __name__ == "__main__":
    main()
