"""From image URLs or bytes to logits: fetch, decode, batch, with the server's limits.

Both APIs (AMI ``/process`` and ``/v1/classify``) go through
:meth:`ServeEngine.classify`; they differ only in how they present the outcome.
Fetching is async (httpx), decoding runs in a thread pool (Pillow releases the
GIL), and the model runs in each model's :class:`DynamicBatcher`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from moths_framework.images import ImageDecodeError, open_rgb
from moths_framework.serve.batching import Admission, BatchResult, DynamicBatcher, Overloaded
from moths_framework.serve.fetch import FetchError, ImageFetcher
from moths_framework.serve.served import ServedModel

__all__ = [
    "ImageOutcome",
    "ImageRequest",
    "NotReady",
    "Overloaded",
    "RequestTimeout",
    "ServeEngine",
    "ServeOptions",
    "UnknownModel",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """The server's knobs; the defaults are ``moths-serve``'s.

    Attributes:
        max_batch: images per model call at most.
        max_wait_ms: how long the first image of a batch waits for others.
        max_in_flight: images admitted at once over all requests; beyond, 503.
        request_timeout: seconds a request may take before it is answered 504.
        fetch_timeout: seconds to fetch one image, all of it.
        max_image_bytes: the largest image file fetched or accepted.
        max_body_bytes: the largest request body.
        allow_hosts: if given, the only hosts images are fetched from.
        decode_workers: threads decoding images; default ``min(8, cpu_count)``.
        token: if given, every endpoint but ``/livez`` and ``/readyz`` needs
            ``Authorization: Bearer <token>``.
    """

    max_batch: int = 32
    max_wait_ms: float = 10.0
    max_in_flight: int = 512
    request_timeout: float = 120.0
    fetch_timeout: float = 10.0
    max_image_bytes: int = 30 * 2**20
    max_body_bytes: int = 64 * 2**20
    allow_hosts: Collection[str] | None = None
    decode_workers: int | None = None
    token: str | None = None


class UnknownModel(LookupError):
    """A pipeline/model slug this server does not serve."""


class NotReady(Exception):
    """The models are still loading or warming up."""


class RequestTimeout(Exception):
    """A request ran past ``request_timeout``."""


@dataclass(frozen=True)
class ImageRequest:
    """One image to classify: by ``url``, or its file ``data``; ``name`` is for messages."""

    id: str
    url: str | None = None
    data: bytes | None = None
    name: str | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """What became of one image: its size and model outputs, or why there are none."""

    image: ImageRequest
    size: tuple[int, int] | None = None
    result: BatchResult | None = None
    error: str | None = None


class ServeEngine:
    """The models, their batchers, the fetcher and the decode pool of one server."""

    def __init__(self, models: Sequence[ServedModel], options: ServeOptions) -> None:
        slugs = [m.slug for m in models]
        duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
        if duplicates:
            raise ValueError(f"two models share the pipeline slug {', '.join(duplicates)}")
        self.models = {m.slug: m for m in models}
        self.options = options
        self.admission = Admission(options.max_in_flight)
        self.ready = False
        self.batchers: dict[str, DynamicBatcher] = {}
        self._fetcher: ImageFetcher | None = None
        self._decoders: ThreadPoolExecutor | None = None
        self._warm_up: asyncio.Task[None] | None = None

    def model(self, slug: str) -> ServedModel:
        if slug not in self.models:
            raise UnknownModel(
                f"unknown pipeline {slug!r}; this service has {', '.join(self.models)}"
            )
        return self.models[slug]

    async def start(self) -> None:
        """Start batchers, fetcher and decode pool; warm the models up in the background."""
        o = self.options
        self._fetcher = ImageFetcher(o.fetch_timeout, o.max_image_bytes, o.allow_hosts)
        workers = o.decode_workers or min(8, os.cpu_count() or 1)
        self._decoders = ThreadPoolExecutor(workers, thread_name_prefix="moths-decode")
        for slug, model in self.models.items():
            batcher = DynamicBatcher(
                model.classifier.model_outputs, o.max_batch, o.max_wait_ms / 1e3, name=slug
            )
            batcher.start()
            self.batchers[slug] = batcher
        self._warm_up = asyncio.get_running_loop().create_task(self._warm())

    async def stop(self) -> None:
        """Finish queued work, then release threads and connections."""
        if self._warm_up is not None:
            self._warm_up.cancel()
            await asyncio.gather(self._warm_up, return_exceptions=True)
        for batcher in self.batchers.values():
            await batcher.stop()
        if self._fetcher is not None:
            await self._fetcher.aclose()
        if self._decoders is not None:
            self._decoders.shutdown(wait=True)

    async def _warm(self) -> None:
        # The first ONNX Runtime call allocates and (on GPU) picks kernels: done
        # before /readyz says yes, so the first real request is not the slow one.
        for slug, model in self.models.items():
            height, width = model.classifier.metadata.preprocessing.input_size
            await self.batchers[slug].classify(np.zeros((3, height, width), np.float32))
            logger.info("pipeline %s ready on %s", slug, model.classifier.provider)
        self.ready = True

    async def classify(self, slug: str, images: Sequence[ImageRequest]) -> list[ImageOutcome]:
        """Classify ``images`` with model ``slug``; one outcome per image, in order.

        Raises:
            UnknownModel, NotReady, Overloaded, RequestTimeout: the request as a
            whole is refused; per-image failures are outcomes with ``error``.
        """
        model = self.model(slug)
        if not self.ready:
            raise NotReady("models are loading")
        self.admission.acquire(len(images))
        try:
            work = asyncio.gather(*(self._one(model, image) for image in images))
            return await asyncio.wait_for(work, self.options.request_timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"request took over {self.options.request_timeout:g} s") from None
        finally:
            self.admission.release(len(images))

    async def _one(self, model: ServedModel, image: ImageRequest) -> ImageOutcome:
        try:
            data = image.data if image.data is not None else await self._fetch(image.url)
            if len(data) > self.options.max_image_bytes:
                raise FetchError(f"image is over {self.options.max_image_bytes} bytes")
            loop = asyncio.get_running_loop()
            array, size = await loop.run_in_executor(self._decoders, _decoded, model, data)
        except (FetchError, ImageDecodeError) as error:
            return ImageOutcome(image, error=_message(error))
        result = await self.batchers[model.slug].classify(array)
        return ImageOutcome(image, size=size, result=result)

    async def _fetch(self, url: str | None) -> bytes:
        if not url:
            raise FetchError("no url given")
        return await self._fetcher.fetch(url)


def _decoded(model: ServedModel, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    """The project's one decoder (decompression-bomb guard included), then preprocessing."""
    image = open_rgb(data)
    return model.classifier.preprocess(image), image.size


def _message(error: Exception) -> str:
    if isinstance(error, ImageDecodeError):
        detail = f" ({error.detail})" if error.detail else ""
        return f"cannot decode image: {error.reason}{detail}"
    return f"cannot fetch image: {error}"
