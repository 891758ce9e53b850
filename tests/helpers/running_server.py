"""A moths-serve app under a real uvicorn server on a free loopback port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn


class Running:
    """A uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app: Any, graceful: float = 5.0) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=graceful, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    def start(self, ready: bool = True) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"{self.url}/readyz", timeout=2).status_code
                if status == 200 or (status == 503 and not ready):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError("server did not become ready in 30 s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    @property
    def engine(self) -> Any:
        return self.app.state.engine


@contextlib.contextmanager
def running(app: Any, graceful: float = 5.0) -> Iterator[Running]:
    server = Running(app, graceful).start()
    try:
        yield server
    finally:
        server.stop()
