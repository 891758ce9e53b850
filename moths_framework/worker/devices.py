"""``--devices``: one worker process per entry (``cpu``, ``cuda:0``, ``cuda:1`` ...).

Each process pulls on its own, so a machine with two GPUs answers twice the
tasks. A ``cuda:N`` process sees only GPU ``N`` (``CUDA_VISIBLE_DEVICES``,
counted within the GPUs the parent already sees); ``cpu`` processes share the
cores between them. The parent only starts, watches and stops its children:
SIGTERM/SIGINT to it is one SIGTERM to each (a graceful stop), and a child that
fails stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

__all__ = [
    "child_command",
    "cpu_threads",
    "parse_devices",
    "providers_for",
    "run_children",
    "stop_when_orphaned",
    "use_device",
]

logger = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(cpu|cuda(?::(\d+))?)$")


def parse_devices(text: str) -> list[str]:
    """The entries of ``--devices`` (``cuda`` means ``cuda:0``).

    Raises:
        ValueError: an entry is not ``cpu`` or ``cuda[:N]``.
    """
    entries = [e.strip().lower() for e in text.split(",") if e.strip()]
    if not entries:
        raise ValueError("--devices is empty: give e.g. cpu or cuda:0,cuda:1")
    bad = [e for e in entries if not _DEVICE.match(e)]
    if bad:
        raise ValueError(f"--devices: {', '.join(bad)} not understood: use cpu, cuda:0, cuda:1 ...")
    return ["cuda:0" if e == "cuda" else e for e in entries]


def providers_for(device: str | None) -> str:
    """ONNX Runtime providers for a device entry (no entry: whatever is fastest here)."""
    if device is None:
        return "auto"
    return "cpu" if device == "cpu" else "cuda"


def cpu_threads(devices: Sequence[str]) -> int | None:
    """ONNX Runtime threads for each ``cpu`` process, so they share the cores (None: one)."""
    n = sum(d == "cpu" for d in devices)
    return max(1, (os.cpu_count() or 1) // n) if n > 1 else None


def use_device(device: str | None) -> None:
    """Make this process see only its GPU (before any model is loaded)."""
    if device is None or device == "cpu":
        return
    index = int(device.split(":")[1])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if index >= len(ids):
            raise ValueError(f"--devices {device}: CUDA_VISIBLE_DEVICES={visible} has {len(ids)}")
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[index]
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index)


def run_children(commands: Sequence[list[str]], labels: Sequence[str]) -> int:
    """Run one process per command until all end; the worst exit status (0 if all clean)."""
    children: list[subprocess.Popen] = []

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    worst = 0
    try:
        for command, label in zip(commands, labels, strict=True):
            # In a session of its own: a terminal's Ctrl-C reaches the parent only.
            children.append(subprocess.Popen(command, start_new_session=True))
            logger.info("worker %s started (pid %d)", label, children[-1].pid)
        running = list(zip(children, labels))  # noqa: B905 (fewer if a start failed)
        while running:
            time.sleep(0.2)
            for child, label in list(running):
                code = child.poll()
                if code is None:
                    continue
                running.remove((child, label))
                if code != 0:
                    if not worst:
                        logger.error("worker %s exited with %d: stopping the others", label, code)
                        forward(signal.SIGTERM, None)
                    worst = worst or code
    finally:
        forward(signal.SIGTERM, None)  # no-op after a clean end; else no child outlives us
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return worst if worst >= 0 else 1


async def stop_when_orphaned(parent: int, stop: Callable[[], None], every: float = 1.0) -> None:
    """Call ``stop`` once process ``parent`` is gone (a ``--devices`` child whose parent
    was killed outright: nobody would forward it a signal)."""
    while os.getppid() == parent:
        await asyncio.sleep(every)
    logger.warning("the parent process is gone: stopping")
    stop()


def child_command(args: Sequence[str], device: str, label: str) -> list[str]:
    """This command line for one child: ``--devices`` replaced by the child's own entry."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--devices":
            skip = True
        elif not arg.startswith("--devices="):
            kept.append(arg)
    module = "moths_framework.cli.worker"
    return [sys.executable, "-m", module, *kept, "--devices", device, "--child", label]
