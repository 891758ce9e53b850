"""Fetching images by URL: http(s) only, a size cap, a total timeout, an optional host allow-list.

Every hop is checked, redirects included, so a redirect cannot lead to a
``file:`` URL or to a host outside ``allow_hosts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from urllib.parse import urlsplit

import httpx

__all__ = ["FetchError", "ImageFetcher"]

_SCHEMES = ("http", "https")
_MAX_REDIRECTS = 5


class FetchError(Exception):
    """An image URL that could not be fetched; the message says why, for the client."""


class ImageFetcher:
    """Downloads image bytes concurrently with one shared ``httpx.AsyncClient``.

    Args:
        timeout: seconds for one image, all of it (connect, wait, every byte);
            a server that trickles bytes is cut off too.
        max_bytes: the largest image accepted; larger ones stop downloading there.
        allow_hosts: if given, the only host names (or IP literals) fetched from.
        max_connections: open connections at most, across all requests.
    """

    def __init__(
        self,
        timeout: float = 10.0,
        max_bytes: int = 30 * 2**20,
        allow_hosts: Collection[str] | None = None,
        max_connections: int = 64,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_hosts = {h.lower() for h in allow_hosts} if allow_hosts else None
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            limits=httpx.Limits(max_connections=max_connections),
            event_hooks={"request": [self._check_request]},
            trust_env=False,  # a proxy from the environment would see every image URL
        )

    def check_url(self, url: str) -> None:
        """Raise :class:`FetchError` unless ``url`` is http(s) to an allowed host."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in _SCHEMES:
            raise FetchError(
                f"URL scheme {parts.scheme or '(none)'!r} refused: only http and https"
            )
        host = (parts.hostname or "").lower()
        if not host:
            raise FetchError("URL has no host")
        if self.allow_hosts is not None and host not in self.allow_hosts:
            raise FetchError(f"host {host!r} is not in --allow-hosts")

    async def fetch(self, url: str) -> bytes:
        """The bytes at ``url``.

        Raises:
            FetchError: refused URL, HTTP error status, too large, timeout, or a
                connection failure; the message names the cause.
        """
        self.check_url(url)
        try:
            return await asyncio.wait_for(self._download(url), self.timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise FetchError(f"timed out after {self.timeout:g} s") from None
        except httpx.TooManyRedirects:
            raise FetchError(f"more than {_MAX_REDIRECTS} redirects") from None
        except httpx.HTTPError as error:
            raise FetchError(f"cannot fetch: {type(error).__name__}: {error}") from None

    async def _download(self, url: str) -> bytes:
        async with self._client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"image is {int(declared)} bytes, over {self.max_bytes}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > self.max_bytes:
                    raise FetchError(f"image is over {self.max_bytes} bytes")
            return bytes(data)

    async def _check_request(self, request: httpx.Request) -> None:
        self.check_url(str(request.url))  # FetchError passes through httpx unchanged

    async def aclose(self) -> None:
        await self._client.aclose()
