"""A stand-in for Antenna's job-queue API on a real loopback port, written from
RolnickLab/antenna's ``ami/jobs/views.py`` (``list`` with ``ids_only``, the ``tasks``
and ``result`` actions), ``ami/ml/views.py`` (``ProjectPipelineViewSet.create``) and
``ami/jobs/serializers.py``; every body a worker posts is parsed with the pydantic
models of :mod:`helpers.antenna_schemas` (unknown fields forbidden) before it is accepted.

What Antenna's queue (NATS JetStream) does that matters to a worker is here too:
tasks are reserved per claim and answered by ``reply_subject``; a task can be
delivered twice in one batch or again after it was answered (at-least-once);
faults can be queued per endpoint: an HTTP status (503 with ``Retry-After``),
``"drop"`` (the connection closes with no answer) or ``"drop-after"`` (the
request is handled, then the connection closes before the answer).
"""

from __future__ import annotations

import http.server
import itertools
import json
import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from helpers.antenna_schemas import (
    AsyncPipelineRegistrationRequest,
    PipelineResultsError,
    PipelineTaskResult,
)

TOKEN = "test-token-5f2b9c"
ACTIVE, SUCCESS = "STARTED", "SUCCESS"


class ResultsRequest(BaseModel):
    """``MLJobResultsRequestSerializer``: ``results`` and an optional ``client_info``."""

    model_config = ConfigDict(extra="forbid")

    results: list[PipelineTaskResult]
    client_info: dict[str, Any] | None = None


class TasksRequest(BaseModel):
    """``MLJobTasksRequestSerializer``: ``batch_size`` >= 1 and an optional ``client_info``."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(ge=1, strict=True)
    client_info: dict[str, Any] | None = None


@dataclass
class Job:
    id: int
    pipeline_slug: str
    pending: list[dict[str, Any]]
    dispatch_mode: str = "async_api"
    status: str = ACTIVE
    reserved: dict[str, dict[str, Any]] = field(default_factory=dict)
    twice_in_batch: set[str] = field(default_factory=set)  # task ids delivered twice at once
    again_after: set[str] = field(default_factory=set)  # task ids delivered again once answered
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def done(self) -> bool:
        return not self.pending and not self.reserved


class AntennaServer:
    """Antenna's worker-facing endpoints under ``/api/v2/``; ``url`` is the API root."""

    def __init__(self, projects: tuple[int, ...] = (1,), keep_bodies: bool = True) -> None:
        self.projects = list(projects)
        self.keep_bodies = keep_bodies
        self.jobs: dict[int, Job] = {}
        self.registrations: list[tuple[int, dict[str, Any]]] = []
        self.posted: list[dict[str, Any]] = []  # every accepted result body, as sent
        self.claims: list[tuple[int, int, dict[str, Any] | None, int]] = []
        self.refused: list[tuple[str, str]] = []  # (path, why) of 400s and 401s
        self.faults: dict[str, list[Any]] = defaultdict(list)
        self.calls: Counter[str] = Counter()
        self.answered = 0
        self.lock = threading.Lock()
        self._subjects = itertools.count(1)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as behind a real proxy

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v2"

    def add_job(self, job_id: int, slug: str, images: list[tuple[str, str]], **kw: Any) -> Job:
        """A job of ``images`` ((image id, url) pairs), one task each; task ids ``t<image id>``."""
        tasks = [{"id": f"t{i}", "image_id": i, "image_url": url} for i, url in images]
        job = Job(job_id, slug, tasks, **kw)
        with self.lock:
            self.jobs[job_id] = job
        return job

    def all_done(self) -> bool:
        with self.lock:
            return all(job.done() or job.status != ACTIVE for job in self.jobs.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the endpoints ------------------------------------------------------

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        kind, args = _route(method, path)
        self.calls[kind] += 1
        fault = self.faults[kind].pop(0) if self.faults.get(kind) else None
        if fault == "drop":
            handler.close_connection = True
            return
        if kind == "unknown":
            status, answer = 404, {"detail": "Not found."}
        elif handler.headers.get("Authorization") != f"Token {TOKEN}":
            self.refused.append((path, "token"))
            status, answer = 401, {"detail": "Invalid token."}
        elif isinstance(fault, int):
            status, answer = fault, {"error": "Task queue temporarily unavailable"}
        else:
            with self.lock:
                status, answer = getattr(self, f"_{kind}")(query, body, *args)
        if fault == "drop-after":
            handler.close_connection = True
            return
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if status == 503:
            handler.send_header("Retry-After", "0")
        handler.end_headers()
        handler.wfile.write(data)

    def _projects(self, query: dict, body: bytes) -> tuple[int, Any]:
        limit = int(query.get("limit", ["10"])[0])
        offset = int(query.get("offset", ["0"])[0])
        page = self.projects[offset : offset + limit]
        more = offset + limit < len(self.projects)
        link = f"{self.url}/projects/?limit={limit}&offset={offset + limit}" if more else None
        results = [{"id": p, "name": f"Project {p}"} for p in page]
        return 200, {"count": len(self.projects), "next": link, "previous": None,
                     "results": results}  # fmt: skip

    def _register(self, query: dict, body: bytes, project: int) -> tuple[int, Any]:
        if project not in self.projects:
            return 404, {"detail": "Not found."}
        try:
            request = AsyncPipelineRegistrationRequest.model_validate_json(body)
        except ValidationError as error:
            self.refused.append((f"projects/{project}/pipelines/", str(error)))
            return 400, {"detail": str(error)}
        raw = json.loads(body)
        self.registrations.append((project, raw))
        slugs = [p.slug for p in request.pipelines]
        return 201, {"timestamp": "2026-01-01T00:00:00Z", "success": True, "error": None,
                     "pipelines": raw["pipelines"], "pipelines_created": slugs,
                     "algorithms_created": []}  # fmt: skip

    def _jobs(self, query: dict, body: bytes) -> tuple[int, Any]:
        slugs = set(",".join(query.get("pipeline__slug__in", [""])).split(","))
        jobs = [
            j for j in self.jobs.values()
            if j.pipeline_slug in slugs
            and (query.get("incomplete_only") != ["1"] or j.status == ACTIVE)
            and query.get("dispatch_mode", [j.dispatch_mode]) == [j.dispatch_mode]
        ]  # fmt: skip
        random.shuffle(jobs)  # Antenna orders ids_only polls at random, one job a page
        limit = int(query.get("limit", ["1" if query.get("ids_only") == ["1"] else "10"])[0])
        results = [{"id": j.id, "pipeline_slug": j.pipeline_slug} for j in jobs[:limit]]
        return 200, {"count": len(jobs), "next": None, "previous": None, "results": results}

    def _tasks(self, query: dict, body: bytes, job_id: int) -> tuple[int, Any]:
        try:
            request = TasksRequest.model_validate_json(body)
        except ValidationError as error:
            self.refused.append((f"jobs/{job_id}/tasks/", str(error)))
            return 400, {"batch_size": [str(error)]}
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"detail": "Not found."}
        if job.dispatch_mode != "async_api":
            return 400, ["Only async_api jobs have fetchable tasks"]
        if job.status != ACTIVE:
            return 200, {"tasks": []}
        delivered = []
        while job.pending and len(delivered) < request.batch_size:
            task = job.pending.pop(0)
            copies = 2 if task["id"] in job.twice_in_batch else 1
            job.twice_in_batch.discard(task["id"])
            for _ in range(copies):
                subject = f"$JS.ACK.job_{job_id}.worker.1.{next(self._subjects)}.1"
                job.reserved[subject] = task
                delivered.append({**task, "reply_subject": subject})
        self.claims.append((job_id, request.batch_size, request.client_info, len(delivered)))
        return 200, {"tasks": delivered}

    def _result(self, query: dict, body: bytes, job_id: int) -> tuple[int, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"detail": "Not found."}
        try:
            request = ResultsRequest.model_validate_json(body)
        except ValidationError as error:
            self.refused.append((f"jobs/{job_id}/result/", str(error)))
            return 400, {"results": [str(error)]}
        raw = json.loads(body)
        if self.keep_bodies:
            self.posted.append(raw)
        queued = []
        for item, result in zip(request.results, raw["results"], strict=True):
            task = job.reserved.pop(item.reply_subject, None)
            if task is not None:
                self.answered += 1
                job.answers[task["id"]].append(result["result"] if self.keep_bodies else {})
                if task["id"] in job.again_after:
                    job.again_after.discard(task["id"])
                    job.pending.append(task)
            kind = "error" if isinstance(item.result, PipelineResultsError) else "ok"
            queued.append({"reply_subject": item.reply_subject, "status": "queued",
                           "task_id": f"celery-{kind}-{len(queued)}"})  # fmt: skip
        if job.done():
            job.status = SUCCESS
        return 200, {"status": "accepted", "job_id": job_id, "results_queued": len(queued),
                     "tasks": queued}  # fmt: skip


def _route(method: str, path: str) -> tuple[str, tuple[int, ...]]:
    """The endpoint of a request (DRF's router: every path ends with a slash)."""
    parts = path.strip("/").split("/")
    if path.endswith("/") and parts[:2] == ["api", "v2"]:
        rest = parts[2:]
        if method == "GET" and rest == ["projects"]:
            return "projects", ()
        if method == "GET" and rest == ["jobs"]:
            return "jobs", ()
        if method == "POST" and len(rest) == 3 and rest[1].isdigit():
            if rest[0] == "projects" and rest[2] == "pipelines":
                return "register", (int(rest[1]),)
            if rest[0] == "jobs" and rest[2] in ("tasks", "result"):
                return rest[2], (int(rest[1]),)
    return "unknown", ()
