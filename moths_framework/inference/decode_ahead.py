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
from typing import NamedTuple

import numpy as np
from PIL import Image

from moths_framework.images import open_rgb

__all__ = ["Decoded", "ImageInput", "decoded_batches"]

ImageInput = str | os.PathLike | Image.Image
_PREFETCH_BATCHES = 2  # batches decoded ahead of the model: enough to hide decoding


class Decoded(NamedTuple):
    """One image: where it came from, and its model input or why there is none."""

    source: str
    array: np.ndarray | None
    error: str | None


def decoded_batches(
    images: Iterable[ImageInput],
    batch_size: int,
    workers: int,
    to_input: Callable[[Image.Image], np.ndarray],
    draft_size: tuple[int, int] | None = None,
) -> Iterator[list[Decoded]]:
    """Batches of ``batch_size`` images (the last may be shorter), in input order.

    Args:
        images: paths or PIL images.
        batch_size: images per batch.
        workers: decoding threads.
        to_input: an RGB image -> the model input (the preprocessing).
        draft_size: passed to :func:`moths_framework.images.open_rgb` (fast JPEG decoding).
    """
    pool = ThreadPoolExecutor(workers, thread_name_prefix="moths-decode")
    pending: deque[Future[Decoded]] = deque()
    numbered = enumerate(images)
    window = batch_size * (_PREFETCH_BATCHES + 1)

    def refill() -> None:
        for index, image in numbered:
            pending.append(pool.submit(_decode, index, image, to_input, draft_size))
            if len(pending) >= window:
                return

    try:
        refill()
        while pending:
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            refill()  # queue the next images before the model runs on this batch
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode(
    index: int,
    image: ImageInput,
    to_input: Callable[[Image.Image], np.ndarray],
    draft_size: tuple[int, int] | None,
) -> Decoded:
    if isinstance(image, Image.Image):
        source = getattr(image, "filename", "") or f"<image {index}>"
    else:
        source = os.fspath(image)
    try:
        # PIL images take the same decode path as files (orientation, alpha, 16-bit).
        return Decoded(source, to_input(open_rgb(image, draft_size=draft_size)), None)
    except Exception as error:  # one bad image must not end a run of a million
        return Decoded(source, None, str(error) or type(error).__name__)
