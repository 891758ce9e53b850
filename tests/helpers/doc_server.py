"""The ``moths-serve`` command of a document, started as written in the background, and
the shell commands (``curl ...``) of its client blocks, run against it.

The documented port is used when it is free; when another program holds it, the
server and its clients run on a free port instead, and :attr:`DocServers.notes`
says so (the test prints it).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
_PORT = re.compile(r"--port[ =](\d+)")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DocServers:
    """One running ``moths-serve`` per document, stopped by :meth:`stop_all`."""

    def __init__(self, cwd: Path) -> None:
        self.cwd, self.env = cwd, dict(os.environ)
        self.ports: dict[str, tuple[str, str]] = {}  # doc -> (documented port, real port)
        self.running: dict[str, subprocess.Popen] = {}
        self.notes: list[str] = []

    def use_env(self, env: dict[str, str]) -> None:
        """Run what starts from now on in ``env``, with this venv's commands first on PATH."""
        self.env = {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}

    def start(self, doc: str, command: str, ready_s: float = 120) -> None:
        """Start ``command`` (a ``moths-serve`` line) and wait until ``/readyz`` says 200."""
        match = _PORT.search(command)
        documented = match.group(1) if match else "8000"
        port = documented if _free(int(documented)) else str(_any_free_port())
        if port != documented:
            self.notes.append(f"{doc}: port {documented} is taken; the server runs on {port}")
        self.ports[doc] = (documented, port)
        words = shlex.split(_PORT.sub(f"--port {port}", command), comments=True)
        log = (self.cwd / f"moths-serve-{port}.log").open("wb")
        self.running[doc] = subprocess.Popen(
            [str(BIN / words[0]), *words[1:]], cwd=self.cwd, env=self.env,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline and self.running[doc].poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop(doc)
        log_text = (self.cwd / f"moths-serve-{port}.log").read_text(errors="replace")
        raise AssertionError(f"{command}: not ready in {ready_s:.0f} s\n{log_text[-3000:]}")

    def run_client(self, doc: str, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run a shell command of ``doc``'s client block against its server."""
        assert doc in self.running, f"{doc}: no moths-serve command of this page started a server"
        documented, port = self.ports[doc]
        command = re.sub(rf"(localhost|127\.0\.0\.1):{documented}\b", rf"\1:{port}", command)
        done = subprocess.run(
            ["bash", "-c", command], cwd=self.cwd, env=self.env, timeout=timeout,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        return done.returncode, done.stdout

    def stop(self, doc: str) -> None:
        server = self.running.pop(doc)
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def stop_all(self) -> None:
        for doc in list(self.running):
            self.stop(doc)
