"""A loopback HTTP server of in-memory image files, for moths-serve to fetch from."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from typing import Any


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent fetches: the default backlog of 5 drops SYNs


class ImageHost:
    """A loopback HTTP server of in-memory files.

    ``delays`` make a path answer slowly, ``redirects`` answer 302 to another URL,
    ``headers`` add response headers to a path; ``requests`` records every
    (path, request headers) it was asked for.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.delays: dict[str, float] = {}
        self.redirects: dict[str, str] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host.requests.append((self.path, dict(self.headers)))
                delay = host.delays.get(self.path, 0.0)
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:  # bounded: at most `delay` seconds
                    time.sleep(0.02)
                if self.path in host.redirects:
                    self.send_response(302)
                    self.send_header("Location", host.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = host.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                for name, value in host.headers.get(self.path, {}).items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may have given up (timeout)
                    self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, data: bytes, delay: float = 0.0) -> str:
        self.files[path] = data
        if delay:
            self.delays[path] = delay
        return self.url(path)

    def redirect(self, path: str, to: str) -> str:
        self.redirects[path] = to
        return self.url(path)

    def asked_for(self, path: str) -> bool:
        return any(asked == path for asked, _ in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# URLs that no parser accepts whole: each must fail its own image, never the request
MALFORMED = {"ipv6": "http://[::1", "idna": "http://xn--a.com/", "port": "http://[::1]:99999/a"}
