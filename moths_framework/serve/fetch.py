"""Fetching images by URL: http(s) only, a size cap, a timeout per image, optional host and
network policies.

Every hop is checked, redirects included, so a redirect cannot lead to a
``file:`` URL, to a host outside ``allow_hosts`` or (with a
:class:`~.network_policy.CheckedNetwork`) to a private address. An image's
clock starts when it has a connection slot, not while it waits for one; bytes
come uncompressed (``Accept-Encoding: identity``), and a server that compresses
anyway is inflated only up to the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Collection
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

from moths_framework.serve.limits import ByteBudget
from moths_framework.serve.network_policy import CheckedNetwork, DeniedAddress

__all__ = ["FetchError", "ImageFetcher", "RefusedURL"]

_SCHEMES = ("http", "https")
_MAX_REDIRECTS = 5
_INFLATED = ("gzip", "x-gzip", "deflate")
# Connections kept open for reuse: httpcore checks every pooled connection (a poll
# on its socket) each time a request starts or ends, so 64 of them cost the event
# loop about 2 ms an image. Above 16 open, httpcore closes a connection as soon as
# it falls idle; up to 16 stay for the next images (bench/README.md, serving).
_KEEP_ALIVE = 16


class FetchError(Exception):
    """An image URL that could not be fetched; the message says why (for the server's log)."""


class RefusedURL(FetchError):
    """A URL refused for what it says, before any connection: the client may be told why."""


class ImageFetcher:
    """Downloads image bytes concurrently with one shared ``httpx.AsyncClient``.

    Args:
        timeout: seconds for one image once it has a connection slot: connect,
            wait and every byte (a server that trickles bytes is cut off too).
        max_bytes: the largest image accepted; larger ones stop downloading there.
        allow_hosts: if given, the only host names (or IP literals) fetched from.
        connections: images downloading at once, across all requests (and the
            size of the connection pool).
        network: where connections are made; a :class:`CheckedNetwork` refuses
            private addresses. Default: anywhere.
        budget: if given, downloaded bytes wait for room here and stay in it
            until the ``fetched`` block ends (the image is decoded).
    """

    def __init__(
        self,
        timeout: float = 10.0,
        max_bytes: int = 30 * 2**20,
        allow_hosts: Collection[str] | None = None,
        connections: int = 64,
        network: CheckedNetwork | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_hosts = {h.lower() for h in allow_hosts} if allow_hosts else None
        self._slots = asyncio.Semaphore(connections)
        self._budget = budget
        pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=connections,
            max_keepalive_connections=min(connections, _KEEP_ALIVE),
            network_backend=network,
        )
        self._client = httpx.AsyncClient(
            transport=_PoolTransport(pool),
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            headers={"Accept-Encoding": "identity"},
            event_hooks={"request": [self._check_request]},
            trust_env=False,  # a proxy from the environment would see every image URL
        )

    def check_url(self, url: str) -> None:
        """Raise :class:`RefusedURL` unless ``url`` is well-formed http(s) to an allowed host."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 (raises on a bad port)
            httpx.URL(url).host  # noqa: B018 (raises on a bad IDNA name, e.g. xn--a.com)
        except (ValueError, httpx.InvalidURL) as error:  # IDNAError is a ValueError
            raise RefusedURL(f"malformed URL: {error}") from None
        if parts.scheme.lower() not in _SCHEMES:
            raise RefusedURL(
                f"URL scheme {parts.scheme or '(none)'!r} refused: only http and https"
            )
        if not host:
            raise RefusedURL("URL has no host")
        if self.allow_hosts is not None and host not in self.allow_hosts:
            raise RefusedURL(f"host {host!r} is not in --allow-hosts")

    @contextlib.asynccontextmanager
    async def fetched(
        self, url: str, limiter: asyncio.Semaphore | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes at ``url``, held in the budget until the block ends.

        Args:
            limiter: the request's own share of the connection slots, taken first.

        Raises:
            RefusedURL: the URL itself is refused (nothing was fetched).
            FetchError: HTTP error status, too large, timeout, a connection
                failure or a policy refusal on the way; the message names the cause.
        """
        self.check_url(url)
        held = _Held(self._budget)
        try:
            async with limiter or contextlib.nullcontext(), self._slots:  # then the clock starts
                data = await self._download(url, held)
            yield data
        finally:
            held.release()

    async def fetch(self, url: str) -> bytes:
        """The bytes at ``url`` (not held in the budget); see :meth:`fetched`."""
        async with self.fetched(url) as data:
            return data

    async def _download(self, url: str, held: _Held) -> bytes:
        try:
            return await self._timed_download(url, held)
        except (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException):
            raise FetchError(f"timed out after {self.timeout:g} s") from None
        except httpx.TooManyRedirects:
            raise FetchError(f"more than {_MAX_REDIRECTS} redirects") from None
        except DeniedAddress as error:
            raise FetchError(f"{error} (--deny-private-networks)") from None
        except RefusedURL as error:  # a redirect's target: what a server said, not the client
            raise FetchError(f"redirect refused: {error}") from None
        except (httpx.HTTPError, httpx.InvalidURL, zlib.error) as error:
            raise FetchError(f"cannot fetch: {type(error).__name__}: {error}") from None

    async def _timed_download(self, url: str, held: _Held) -> bytes:
        started = time.monotonic()
        with anyio.fail_after(self.timeout):
            response = await self._client.send(self._client.build_request("GET", url), stream=True)
        try:
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", *_INFLATED):
                raise FetchError(f"content-encoding {encoding!r} refused")
            declared = response.headers.get("content-length", "")
            if encoding == "identity" and declared.isdigit():
                if int(declared) > self.max_bytes:
                    raise FetchError(f"image is {int(declared)} bytes, over {self.max_bytes}")
                expected = int(declared)
            else:
                expected = self.max_bytes
            spent = time.monotonic() - started
            await held.acquire(expected)  # not timed: the decoders are behind, not the server
            with anyio.fail_after(max(self.timeout - spent, 0.001)):
                data = await self._read(response, encoding)
            held.shrink_to(len(data))
            return data
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response, encoding: str) -> bytes:
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in _INFLATED else None
        data = bytearray()
        async for chunk in response.aiter_raw():
            if inflate is not None:  # never more than the cap out of any chunk
                chunk = inflate.decompress(chunk, self.max_bytes + 1 - len(data))
                if inflate.unconsumed_tail:
                    raise FetchError(f"image inflates to over {self.max_bytes} bytes")
            data += chunk
            if len(data) > self.max_bytes:
                raise FetchError(f"image is over {self.max_bytes} bytes")
        return bytes(data)

    async def _check_request(self, request: httpx.Request) -> None:
        self.check_url(str(request.url))  # RefusedURL passes through httpx unchanged

    async def aclose(self) -> None:
        await self._client.aclose()


class _Held:
    """The budget bytes one download holds (none without a budget)."""

    def __init__(self, budget: ByteBudget | None) -> None:
        self.budget = budget
        self.amount = 0

    async def acquire(self, amount: int) -> None:
        if self.budget is not None:
            await self.budget.acquire(amount)
            self.amount = amount

    def shrink_to(self, amount: int) -> None:
        if self.budget is not None and amount < self.amount:
            self.budget.release(self.amount - amount)
            self.amount = amount

    def release(self) -> None:
        if self.budget is not None and self.amount:
            self.budget.release(self.amount)
            self.amount = 0


class _PoolTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over our own connection pool.

    httpx's transport cannot be given an httpcore network backend; its pool
    (``_pool``, what it sends every request through) is replaced by one that is.
    """

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        super().__init__(trust_env=False)
        self._pool = pool
