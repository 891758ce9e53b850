"""Antenna's REST API as the pull worker uses it, retrying what a busy server or a
flaky network gets wrong.

Connection failures (refused, reset, dropped mid-answer, timed out) and HTTP
429/502/503/504 are tried again after a :class:`.Backoff` delay (a
``Retry-After`` is honoured); 401/403 is :class:`AntennaRefused` (the token is
wrong: no retry helps); any other 4xx/5xx is :class:`AntennaError` with
Antenna's own words. The token travels only in the ``Authorization: Token``
header (Django REST framework's token auth), to Antenna's host only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from moths_framework.messages import one_line
from moths_framework.serve.json_body import render
from moths_framework.worker.backoff import Backoff
from moths_framework.worker.schemas_antenna import (
    AsyncPipelineRegistrationRequest,
    JobListItem,
    JobsListResponse,
    PipelineProcessingTask,
    TasksResponse,
)

__all__ = ["AntennaClient", "AntennaError", "AntennaRefused", "Stopped", "api_root"]

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_PAGES = 100
T = TypeVar("T", bound=BaseModel)


class AntennaError(Exception):
    """Antenna answered a request with an error that trying again will not fix."""


class AntennaRefused(Exception):
    """Antenna refused the token (HTTP 401 or 403): the worker cannot go on."""


class Stopped(Exception):
    """The worker was asked to stop while this request was waiting to be tried again."""


def api_root(url: str) -> str:
    """Antenna's API root from what the user gave: ``https://host`` means ``https://host/api/v2/``.

    Raises:
        ValueError: not an http(s) URL with a host.
    """
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as error:
        raise ValueError(f"--antenna {url!r} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"--antenna {url!r} is not an http(s) URL with a host, "
            "e.g. https://antenna.insectai.org/api/v2"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"--antenna {url!r}: give the API root, without ?query or #fragment")
    path = parts.path.rstrip("/") or "/api/v2"
    return f"{parts.scheme}://{parts.netloc}{path}/"


class AntennaClient:
    """One worker's connection to Antenna.

    Args:
        root: the API root (see :func:`api_root`).
        token: the processing service's API token.
        client_info: who we are (host, process, device, version), sent with
            task claims and results as Antenna's ``client_info``.
        backoff: delays between tries.
        post_patience: seconds to keep trying to deliver one batch of results;
            then the batch is given up (Antenna delivers its tasks again).
        stop: once set, waiting to try a poll or a claim again ends in :class:`Stopped`;
            results are still delivered (within ``post_patience``).
    """

    def __init__(
        self,
        root: str,
        token: str,
        client_info: dict[str, Any] | None = None,
        backoff: Backoff | None = None,
        timeout: float = 60.0,
        post_patience: float = 300.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.root = root
        self.client_info = client_info or {}
        self.backoff = backoff or Backoff()
        self.post_patience = post_patience
        self.stop = stop or asyncio.Event()
        self.retries = 0
        version = self.client_info.get("software", "moths-framework")
        self._client = httpx.AsyncClient(
            base_url=root,
            headers={"Authorization": f"Token {token}", "User-Agent": f"moths-worker ({version})"},
            timeout=timeout,
            follow_redirects=False,  # a redirect could carry the token elsewhere
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def projects(self) -> list[dict[str, Any]]:
        """The projects the token can see (every page)."""
        found: list[dict[str, Any]] = []
        url: str | None = "projects/"
        for _ in range(_MAX_PAGES):
            if url is None:
                break
            page = _json(await self._send("GET", url, params={"limit": 100}))
            if not isinstance(page, dict):
                raise AntennaError(f"GET {url}: the answer is not a page of projects")
            found += [p for p in page.get("results", []) if isinstance(p, dict) and "id" in p]
            url = self._same_host(page.get("next"))
        return found

    async def register(
        self, project_id: int, body: AsyncPipelineRegistrationRequest
    ) -> dict[str, Any]:
        """Register our pipelines with one project; Antenna's ``PipelineRegistrationResponse``."""
        response = await self._send(
            "POST", f"projects/{project_id}/pipelines/", json=body.model_dump(mode="json")
        )
        return _json(response)

    async def jobs(self, slugs: Sequence[str]) -> list[JobListItem]:
        """Unfinished ``async_api`` jobs of our pipelines (Antenna picks which, at random)."""
        params = {
            "pipeline__slug__in": ",".join(slugs),
            "ids_only": 1,
            "incomplete_only": 1,
            "dispatch_mode": "async_api",
        }
        response = await self._send("GET", "jobs/", params=params)
        return _parsed(JobsListResponse, response).results

    async def claim(self, job_id: int, batch_size: int) -> list[PipelineProcessingTask]:
        """Reserve up to ``batch_size`` tasks of a job; none when it has no more."""
        body = {"batch_size": batch_size, "client_info": self.client_info}
        response = await self._send("POST", f"jobs/{job_id}/tasks/", json=body)
        return _parsed(TasksResponse, response).tasks

    async def post_results(self, job_id: int, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Deliver ``PipelineTaskResult`` objects; Antenna's acknowledgement."""
        content = render({"results": results, "client_info": self.client_info})
        response = await self._send(
            "POST",
            f"jobs/{job_id}/result/",
            content=content,
            headers={"Content-Type": "application/json"},
            patience=self.post_patience,
        )
        return _json(response)

    async def _send(
        self, method: str, url: str, patience: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request, tried until it works; ``patience``: seconds to keep trying even
        after a stop (None: give up as soon as the worker stops)."""
        started = time.monotonic()
        attempt = 0
        while True:
            retry_after = None
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.TransportError as error:
                problem = f"cannot reach Antenna ({one_line(error, 160)})"
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return _checked(method, url, response)
                problem = f"Antenna answered HTTP {response.status_code}"
                retry_after = _seconds(response.headers.get("retry-after"))
            delay = self.backoff.delay(attempt, retry_after)
            out_of_patience = patience is not None and time.monotonic() - started + delay > patience
            if out_of_patience:
                raise AntennaError(f"{method} {url}: {problem}; gave up after {patience:g} s")
            if patience is None and self.stop.is_set():
                raise Stopped(problem)
            logger.warning("%s on %s %s; trying again in %.1f s", problem, method, url, delay)
            self.retries += 1
            attempt += 1
            await self._pause(delay, interruptible=patience is None)

    async def _pause(self, seconds: float, interruptible: bool) -> None:
        if not interruptible:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except asyncio.TimeoutError:
            return
        raise Stopped("stopping")

    def _same_host(self, url: Any) -> str | None:
        """A pagination link, only if it points back at Antenna (the token goes with it)."""
        if not isinstance(url, str) or not url:
            return None
        ours, theirs = urlsplit(self.root), urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            logger.warning("not following a page link to another host: %s", theirs.netloc)
            return None
        return url


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        where = f"{response.request.method} {response.request.url.path}"
        raise AntennaError(f"{where}: the answer is not JSON: {_detail(response)}") from None


def _parsed(model: type[T], response: httpx.Response) -> T:
    try:
        return model.model_validate(_json(response))
    except ValidationError as error:
        where = f"{response.request.method} {response.request.url.path}"
        raise AntennaError(f"{where}: unexpected answer: {one_line(error, 200)}") from None


def _checked(method: str, url: str, response: httpx.Response) -> httpx.Response:
    if response.status_code in (401, 403):
        raise AntennaRefused(
            f"Antenna refused the token (HTTP {response.status_code}: {_detail(response)}); "
            "check --token-file and the service's permissions in the project"
        )
    if response.status_code >= 400:
        raise AntennaError(f"{method} {url}: HTTP {response.status_code}: {_detail(response)}")
    return response


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and "detail" in body:
        body = body["detail"]
    text = " ".join(str(body).split())
    return text[:300] or response.reason_phrase


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
