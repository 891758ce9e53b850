"""Images decoded and preprocessed in threads, a few batches ahead of the model.

A bounded window of futures: decoding runs ahead of the model without holding
every decoded image of a million-image run in memory. An image that cannot be
decoded becomes a :class:`Decoded` with ``error`` set; it never ends the run.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from PIL import Image

__all__ = ["Decoded", "ImageInput", "decoded_batches", "prepared_ahead", "source_name"]

ImageInput = str | os.PathLike | Image.Image
_PREFETCH_BATCHES = 2  # batches decoded ahead of the model: enough to hide decoding
T = TypeVar("T")
R = TypeVar("R")


class Decoded(NamedTuple):
    """One image: where it came from, and its model input (what ``to_input`` made:
    an array for a classifier) or why there is none."""

    source: str
    array: Any | None
    error: str | None


def decoded_batches(
    images: Iterable[ImageInput],
    batch_size: int,
    workers: int,
    to_input: Callable[[ImageInput], Any],
) -> Iterator[list[Decoded]]:
    """Batches of ``batch_size`` images (the last may be shorter), in input order.

    Args:
        images: paths or PIL images.
        batch_size: images per batch.
        workers: decoding threads.
        to_input: a path or PIL image -> the model input (decode and preprocessing);
            it may raise, for an image that cannot be decoded.
    """

    def decode(index: int, image: ImageInput) -> Decoded:
        source = source_name(image, index)
        try:
            return Decoded(source, to_input(image), None)
        except Exception as error:  # one bad image must not end a run of a million
            return Decoded(source, None, str(error) or type(error).__name__)

    window = batch_size * (_PREFETCH_BATCHES + 1)
    items = prepared_ahead(images, decode, workers, window)
    try:
        while batch := [item for _, item in zip(range(batch_size), items, strict=False)]:
            yield batch
    finally:
        items.close()  # stops the decoding threads when the caller stops early


def prepared_ahead(
    items: Iterable[T], prepare: Callable[[int, T], R], workers: int, window: int
) -> Iterator[R]:
    """``prepare(index, item)`` of each item, in order, computed by ``workers`` threads at
    most ``window`` items ahead of the consumer (which bounds the memory they hold).

    ``prepare`` must not raise: turn a failure into a result. Closing the iterator
    cancels what is queued and waits for the threads.
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="moths-decode")
    pending: deque[Future[R]] = deque()
    numbered = enumerate(items)

    def refill() -> None:
        for index, item in numbered:
            pending.append(pool.submit(prepare, index, item))
            if len(pending) >= window:
                return

    try:
        refill()
        while pending:
            result = pending.popleft().result()
            refill()  # queue the next items before the consumer works on this one
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def source_name(image: ImageInput, index: int) -> str:
    """What results call an input: a path as given, a PIL image's file name, or
    ``<image N>`` for an image made in memory."""
    if isinstance(image, Image.Image):
        return getattr(image, "filename", "") or f"<image {index}>"
    return os.fspath(image)
