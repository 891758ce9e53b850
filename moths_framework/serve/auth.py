"""Optional bearer-token auth, and the request body limit: two small ASGI middlewares."""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BearerAuth", "BodyLimit", "OPEN_PATHS", "read_token"]

# Health checks stay open: orchestrators and Antenna's status poll call them without a token.
OPEN_PATHS = frozenset({"/livez", "/readyz"})


def read_token(path: str | os.PathLike) -> str:
    """The token in a file (surrounding whitespace stripped).

    Raises:
        ValueError: the file cannot be read or is empty.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ValueError(f"cannot read token file {path}: {error.strerror or error}") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


async def _send_json(send: Send, status: int, body: dict, headers: list | None = None) -> None:
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


class BearerAuth:
    """Require ``Authorization: Bearer <token>`` on every HTTP path but :data:`OPEN_PATHS`.

    The comparison is constant-time (``hmac.compare_digest``), so response
    timing does not reveal how much of a guess was right.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self._expected):
            detail = "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
            headers = [(b"www-authenticate", b"Bearer")]
            await _send_json(send, 401, {"detail": detail}, headers)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answer 413 to a request body over ``max_bytes``, declared or streamed.

    The body is read here, up to the limit, and replayed to the app: the app
    never holds more than ``max_bytes`` of one request.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        detail = f"request body over {self.max_bytes} bytes; send fewer or smaller images"
        await _send_json(send, 413, {"detail": detail})
