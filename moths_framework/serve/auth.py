"""Optional bearer-token auth: a small ASGI middleware."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from moths_framework.serve.limits import send_json

__all__ = ["BearerAuth", "OPEN_PATHS", "read_token"]

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
            await send_json(send, 401, {"detail": detail}, headers)
            return
        await self.app(scope, receive, send)
