"""Memory bounded by bytes: a byte budget, and the request-body limit that uses one.

Request bodies and fetched images are the server's big buffers. Each request
body is capped (small for JSON, larger for multipart uploads) and all bodies
held at once share a budget: a request that would pass it is answered 503 at
once. Fetched images share another budget until they are decoded; a download
waits for room there instead (decoding always frees it).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "ByteBudget", "send_json"]

_REPLAY_CHUNK = 64 * 1024  # the body reaches the app in pieces: parsers yield between them


class ByteBudget:
    """Bytes held at once, at most ``capacity`` (one event loop; waiters served in order).

    Attributes:
        held: bytes held now.
        peak: the most ever held at once (for tests and logs).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a byte budget needs capacity >= 1, got {capacity}")
        self.capacity = capacity
        self.held = 0
        self.peak = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_acquire(self, amount: int) -> bool:
        """Take ``amount`` bytes if they fit now (and nobody waits before us)."""
        if self._waiters or self.held + amount > self.capacity:
            return False
        self._take(amount)
        return True

    async def acquire(self, amount: int) -> None:
        """Take ``amount`` bytes, waiting in line until they fit.

        Raises:
            ValueError: ``amount`` is over the whole capacity (it would never fit).
        """
        if amount > self.capacity:
            raise ValueError(f"{amount} bytes can never fit a budget of {self.capacity}")
        if self.try_acquire(amount):
            return
        entry = (amount, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        except BaseException:  # cancelled: leave the line, or give back what came just now
            if entry[1].done() and not entry[1].cancelled():
                self.release(amount)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, amount: int) -> None:
        self.held -= amount
        self._wake()

    def _take(self, amount: int) -> None:
        self.held += amount
        self.peak = max(self.peak, self.held)

    def _wake(self) -> None:
        while self._waiters and self.held + self._waiters[0][0] <= self.capacity:
            amount, future = self._waiters.popleft()
            if not future.done():
                self._take(amount)
                future.set_result(None)


async def send_json(send: Send, status: int, body: dict, headers: list | None = None) -> None:
    """A whole JSON response from ASGI middleware."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimit:
    """Caps each request body, declared or streamed, and all bodies held at once.

    A ``multipart/form-data`` body (image uploads) may be ``max_multipart``
    bytes, any other body (JSON) ``max_json``: 413 beyond. Bodies held by
    requests in progress share ``budget``: 503 with ``Retry-After`` when a new
    one does not fit. The body is read here and replayed to the app in pieces.
    """

    def __init__(self, app: ASGIApp, max_multipart: int, max_json: int, budget: ByteBudget) -> None:
        self.app = app
        self.max_multipart = max_multipart
        self.max_json = min(max_json, max_multipart)
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        cap = self.max_multipart if multipart else self.max_json
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > cap:
            await self._too_large(send, multipart, cap)
            return
        held = 0
        try:
            chunks, more = [], True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                if held + len(chunk) > cap:
                    await self._too_large(send, multipart, cap)
                    return
                if not self.budget.try_acquire(len(chunk)):
                    await _busy(send)
                    return
                held += len(chunk)
                chunks.append(chunk)
                more = message.get("more_body", False)
            await self.app(scope, _replay(b"".join(chunks), receive), send)
        finally:
            self.budget.release(held)

    async def _too_large(self, send: Send, multipart: bool, cap: int) -> None:
        if multipart:
            detail = f"request body over {cap} bytes; send fewer or smaller images"
        else:
            detail = (
                f"JSON request body over {cap} bytes; send image files as multipart/form-data "
                f"(up to {self.max_multipart} bytes) or fewer images per request"
            )
        await send_json(send, 413, {"detail": detail})


async def _busy(send: Send) -> None:
    detail = "busy: the request bodies in memory are at their budget; retry shortly"
    await send_json(send, 503, {"detail": detail}, [(b"retry-after", b"1")])


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: ``body`` in pieces, yielding to the event loop between them."""
    offsets = iter(range(0, max(len(body), 1), _REPLAY_CHUNK))

    async def replay() -> Message:
        start = next(offsets, None)
        if start is None:
            return await receive()  # after the body: wait for the disconnect, as usual
        await asyncio.sleep(0)
        end = start + _REPLAY_CHUNK
        return {"type": "http.request", "body": body[start:end], "more_body": end < len(body)}

    return replay
