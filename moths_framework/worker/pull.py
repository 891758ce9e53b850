"""The pull worker's loop: register, look for jobs, claim tasks, process, post results.

A stop (SIGTERM, Ctrl-C) ends the loop after the batch in hand is processed
and its results delivered; a second one ends it at once (Antenna delivers
the unanswered tasks again after its acknowledgement timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from moths_framework.messages import first_few
from moths_framework.serve import ami
from moths_framework.serve.engine import ServeEngine, ServeOptions
from moths_framework.serve.served import ServedModel
from moths_framework.worker.antenna_client import AntennaClient, AntennaError, Stopped
from moths_framework.worker.batch import RecentTasks, process_batch
from moths_framework.worker.schemas_antenna import (
    AsyncPipelineRegistrationRequest,
    JobListItem,
    PipelineProcessingTask,
)

__all__ = ["PullWorker", "WorkerFailed", "WorkerSettings", "run_until_signalled"]

logger = logging.getLogger(__name__)


class WorkerFailed(Exception):
    """The worker cannot work at all (a model failed its warm-up); the message says why."""


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker process pulls.

    Attributes:
        service_name: the processing service's name in Antenna (registration).
        batch_size: tasks claimed at once.
        poll_interval: seconds between looks for jobs while there are none.
        register: register the pipelines at start (with ``projects``, or every
            project the token can see when ``projects`` is empty).
    """

    service_name: str
    batch_size: int = 24
    poll_interval: float = 5.0
    register: bool = True
    projects: Sequence[int] = ()


@dataclass
class _Counts:
    started: float
    tasks: int = 0
    failed: int = 0
    again: int = 0
    batches: int = 0
    undelivered: int = 0


class PullWorker:
    """Pulls and answers the tasks of ``models``' pipelines from Antenna (see the module)."""

    def __init__(
        self,
        client: AntennaClient,
        models: Sequence[ServedModel],
        options: ServeOptions,
        settings: WorkerSettings,
    ) -> None:
        self.client = client
        self.settings = settings
        self.stop = client.stop
        self.models = list(models)
        self._fatal: list[str] = []
        self.engine = ServeEngine(models, options, on_fatal=self._fatal.append)
        self.recent = RecentTasks()
        self.counts = _Counts(started=time.monotonic())
        self._idle_said = False

    @property
    def slugs(self) -> list[str]:
        return [m.slug for m in self.models]

    def request_stop(self) -> None:
        if not self.stop.is_set():
            logger.info("stopping: finishing and posting the batch in hand (again to stop at once)")
        self.stop.set()

    async def run(self) -> None:
        """Work until stopped.

        Raises:
            WorkerFailed: a model failed its warm-up.
            AntennaRefused: Antenna refused the token.
        """
        await self.engine.start()
        try:
            await self._ready()
            if self.settings.register:
                await self.register()
            while not self.stop.is_set():
                try:
                    worked = await self._one_round()
                except Stopped:
                    break
                if not worked:
                    await _wait(self.stop, self.settings.poll_interval)
        finally:
            await self.engine.stop()
            self._say_totals()

    async def register(self) -> None:
        """Register our pipelines with the chosen projects (or every project we can see)."""
        body = AsyncPipelineRegistrationRequest(
            processing_service_name=self.settings.service_name,
            pipelines=[ami.pipeline_config(m) for m in self.models],
        )
        projects = list(self.settings.projects)
        if not projects:
            try:
                projects = [int(p["id"]) for p in await self.client.projects()]
            except AntennaError as error:
                logger.warning("cannot list the projects: %s", error)
            if not projects:
                logger.warning("the token sees no project: pipelines registered nowhere")
        for project in projects:
            try:
                answer = await self.client.register(project, body)
            except AntennaError as error:
                logger.warning("project %s: registration failed: %s", project, error)
                continue
            created = answer.get("pipelines_created") or []
            logger.info(
                "project %s: registered %s as %r (%d new)",
                project, first_few(self.slugs), self.settings.service_name, len(created),
            )  # fmt: skip

    async def _ready(self) -> None:
        while not self.engine.ready:
            if self._fatal:
                raise WorkerFailed(self._fatal[0])
            await asyncio.sleep(0.02)

    async def _one_round(self) -> bool:
        """Look for jobs once and work through them; whether there was any work."""
        try:
            jobs = await self.client.jobs(self.slugs)
        except Stopped:
            raise
        except AntennaError as error:
            logger.warning("cannot list jobs: %s", error)
            return False
        worked = False
        for job in jobs:
            if self.stop.is_set():
                break
            if job.pipeline_slug not in self.engine.models:
                logger.warning(
                    "job %s: pipeline %r is not ours: skipped", job.id, job.pipeline_slug
                )
                continue
            worked = await self._work_on(job) or worked
        if not worked and not self._idle_said:
            logger.info(
                "no tasks for %s; looking again every %g s",
                first_few(self.slugs), self.settings.poll_interval,
            )  # fmt: skip
        self._idle_said = not worked
        return worked

    async def _work_on(self, job: JobListItem) -> bool:
        worked = False
        while not self.stop.is_set():
            try:
                tasks = await self.client.claim(job.id, self.settings.batch_size)
            except AntennaError as error:
                logger.warning("job %s: cannot claim tasks: %s", job.id, error)
                break
            if not tasks:
                break
            worked = True
            await self._answer(job, tasks)
        return worked

    async def _answer(self, job: JobListItem, tasks: list[PipelineProcessingTask]) -> None:
        started = time.monotonic()
        outcome = await process_batch(self.engine, job.pipeline_slug or "", tasks, self.recent)
        if outcome.unanswerable:
            logger.warning("job %s: %d tasks without a reply_subject ignored", job.id,
                           outcome.unanswerable)  # fmt: skip
        if outcome.results:
            try:
                await self.client.post_results(job.id, outcome.results)
            except AntennaError as error:
                self.counts.undelivered += len(outcome.results)
                logger.error(
                    "job %s: %d results not delivered (%s); Antenna will send those tasks again",
                    job.id, len(outcome.results), error,
                )  # fmt: skip
                return
        c = self.counts
        c.tasks += len(outcome.results)
        c.failed += outcome.failed
        c.again += outcome.again
        c.batches += 1
        rate = c.tasks / max(time.monotonic() - c.started, 1e-9)
        again = f", {outcome.again} delivered again" if outcome.again else ""
        logger.info(
            "job %s (%s): %d tasks -> %d results, %d failed%s in %.2f s; %d tasks in all, %.1f/s",
            job.id, job.pipeline_slug, len(tasks), outcome.ok, outcome.failed, again,
            time.monotonic() - started, c.tasks, rate,
        )  # fmt: skip
        if outcome.errors:
            logger.warning("job %s: %s", job.id, first_few(outcome.errors, 3))

    def _say_totals(self) -> None:
        c = self.counts
        logger.info(
            "stopped: %d tasks answered in %d batches (%d failed, %d delivered again, "
            "%d results undelivered) in %.0f s",
            c.tasks, c.batches, c.failed, c.again, c.undelivered, time.monotonic() - c.started,
        )  # fmt: skip


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def run_until_signalled(worker: PullWorker) -> bool:
    """Run ``worker``; SIGTERM/SIGINT stop it gracefully, a second one at once.

    Returns:
        True after a graceful stop, False after a stop at once.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            worker.request_stop()
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await worker.run()
        return True
    except asyncio.CancelledError:
        if signals < 2:
            raise
        logger.warning("stopped at once: tasks in hand are unanswered; Antenna sends them again")
        return False
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
