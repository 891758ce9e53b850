"""Dynamic batching across concurrent requests, and admission control (backpressure).

One :class:`DynamicBatcher` per model: requests put preprocessed images in
its queue; one worker takes up to ``max_batch`` of them, waiting at most
``max_wait`` after the first for more, and runs the model on them in one call
on its own thread (one ONNX Runtime session, never two calls at once). The
event loop never blocks on the model. A batch the model fails on is run again
image by image, so only the image that fails alone fails.

:class:`Admission` bounds the images in flight: a request is admitted only if
its images fit, and holds them until it is answered, so queued arrays are
bounded; fetched bytes and request bodies have byte budgets of their own
(:mod:`.limits`), decoded pixels a per-image cap (``--max-pixels``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["Admission", "BatchResult", "DynamicBatcher", "Overloaded"]

# batch -> (rank -> logits [N, classes], features [N, D] or None)
RunModel = Callable[[np.ndarray], tuple[Mapping[str, np.ndarray], np.ndarray | None]]


class Overloaded(Exception):
    """No room for a request now; answered 503 with ``Retry-After``."""


class Admission:
    """A budget of images in flight across all requests (single event loop, no locking)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"admission capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.in_flight = 0

    def acquire(self, count: int) -> None:
        """Take ``count`` images of the budget, or raise :class:`Overloaded`."""
        if self.in_flight + count > self.capacity:
            raise Overloaded(f"{self.in_flight} images in flight, at most {self.capacity}")
        self.in_flight += count

    def release(self, count: int) -> None:
        self.in_flight -= count


@dataclass(frozen=True)
class BatchResult:
    """One image's share of a model call: rank -> logits row, seconds per image, and
    its feature vector when the model call returns features (novelty scoring)."""

    logits: dict[str, np.ndarray]
    seconds_per_image: float
    features: np.ndarray | None = None


@dataclass
class _Item:
    array: np.ndarray
    future: asyncio.Future[BatchResult]


class DynamicBatcher:
    """Gathers single images from concurrent callers into model batches.

    Args:
        run: the model, batch ``[N, 3, H, W]`` -> (rank -> ``[N, classes]`` logits,
            ``[N, D]`` features or ``None``), as ``OnnxClassifier.model_outputs``.
        max_batch: images per model call at most.
        max_wait: seconds to wait after the first image for the batch to fill.
        name: for the thread's name.
    """

    def __init__(self, run: RunModel, max_batch: int, max_wait: float, name: str = "model"):
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()  # None: stop
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"moths-{name}")
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # model calls so far, for tests and logs

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Finish every image queued so far, then stop the worker and its thread."""
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
        self._thread.shutdown(wait=True)

    async def classify(self, array: np.ndarray) -> BatchResult:
        """The model's logits for one preprocessed image ``[3, H, W]``."""
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(array, future))
        return await future

    async def _work(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = await self._gather()
            batch = [item for item in batch if not item.future.done()]  # callers gone
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Item]) -> None:
        try:
            await self._run_and_answer(batch)
        except Exception as error:
            if len(batch) == 1:
                _fail(batch[0], error)
                return
            # One bad image must not fail its batch-mates: each runs alone, and
            # only the ones that fail alone hear about it.
            for item in batch:
                if item.future.done():  # its caller is gone
                    continue
                try:
                    await self._run_and_answer([item])
                except Exception as alone:
                    _fail(item, alone)

    async def _run_and_answer(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        stacked = np.stack([item.array for item in batch])
        logits, features = await loop.run_in_executor(self._thread, self._run, stacked)
        share = (time.perf_counter() - started) / len(batch)
        self.batches += 1
        for row, item in enumerate(batch):
            if not item.future.done():
                result = {rank: values[row] for rank, values in logits.items()}
                vector = None if features is None else features[row]
                item.future.set_result(BatchResult(result, share, vector))

    async def _gather(self) -> tuple[list[_Item], bool]:
        """Up to ``max_batch`` items, and whether the stop sentinel came."""
        first = await self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                if self._queue.empty() and remaining > 0:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                else:
                    item = self._queue.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False


def _fail(item: _Item, error: Exception) -> None:
    if not item.future.done():
        item.future.set_exception(error)
