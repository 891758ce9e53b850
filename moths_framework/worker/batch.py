"""One claimed batch of Antenna tasks processed, with the code that answers ``/process``.

Antenna's queue delivers each task at least once: a task whose result was not
acknowledged in time comes again, under a new ``reply_subject``, possibly in
the same batch. Every delivery is answered (that is what acknowledges it), but
an image delivered twice in one batch is fetched and processed once, and a
task seen before is simply processed again: results do not depend on when
they are computed, and Antenna saves them idempotently.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from moths_framework.messages import one_line
from moths_framework.serve.engine import ServeEngine
from moths_framework.serve.process import process_pipeline_request
from moths_framework.serve.schemas_ami import PipelineRequest, SourceImageRequest
from moths_framework.worker.schemas_antenna import PipelineProcessingTask

__all__ = ["BatchOutcome", "RecentTasks", "process_batch"]


class RecentTasks:
    """The ids of the last ``size`` tasks answered (bounded: a worker runs for months)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, task_id: str) -> bool:
        """Whether ``task_id`` was answered before; remembers it either way."""
        known = task_id in self._ids
        self._ids[task_id] = None
        self._ids.move_to_end(task_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return known

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class BatchOutcome:
    """What became of a batch.

    Attributes:
        results: one ``PipelineTaskResult`` object per delivery (reply subject).
        ok, failed: deliveries answered with a ``PipelineResultsResponse`` or a
            ``PipelineResultsError``.
        again: deliveries of a task already answered in this batch or before.
        unanswerable: tasks without a ``reply_subject`` (nothing to answer to).
        errors: the failures' messages, for the log.
    """

    results: list[dict[str, Any]] = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    again: int = 0
    unanswerable: int = 0
    errors: list[str] = field(default_factory=list)


async def process_batch(
    engine: ServeEngine,
    pipeline: str,
    tasks: Sequence[PipelineProcessingTask],
    recent: RecentTasks | None = None,
) -> BatchOutcome:
    """Process ``tasks`` of ``pipeline`` (their images concurrently); every delivery's result."""
    outcome = BatchOutcome()
    recent = recent if recent is not None else RecentTasks()
    deliveries: dict[str, PipelineProcessingTask] = {}
    for task in tasks:
        if task.reply_subject is None:
            outcome.unanswerable += 1
        elif task.reply_subject not in deliveries:  # the very same delivery twice: one answer
            deliveries[task.reply_subject] = task
    images: dict[tuple[str, str], list[PipelineProcessingTask]] = {}
    for task in deliveries.values():
        if recent.seen(task.id):
            outcome.again += 1
        images.setdefault((task.image_id, task.image_url), []).append(task)
    answers = await asyncio.gather(
        *(_process_image(engine, pipeline, image_id, url) for image_id, url in images)
    )
    for (image_id, url), answer in zip(images, answers, strict=True):
        failed = "error" in answer
        for task in images[(image_id, url)]:
            outcome.results.append({"reply_subject": task.reply_subject, "result": answer})
            outcome.failed += failed
            outcome.ok += not failed
        if failed:
            outcome.errors.append(f"image {image_id}: {answer['error']}")
    return outcome


async def _process_image(
    engine: ServeEngine, pipeline: str, image_id: str, url: str
) -> dict[str, Any]:
    """The ``PipelineResultsResponse`` of one image, or its ``PipelineResultsError``."""
    request = PipelineRequest(
        pipeline=pipeline, source_images=[SourceImageRequest(id=image_id, url=url)]
    )
    try:
        response = await process_pipeline_request(engine, request)
    except Exception as error:  # a refusal of the whole request is this image's error here
        return {"error": one_line(error), "image_id": image_id}
    if response.get("errors"):
        return {"error": response["errors"][0]["error"], "image_id": image_id}
    return response
