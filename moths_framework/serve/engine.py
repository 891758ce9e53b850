"""From image URLs or bytes to logits: fetch, decode, batch, with the server's limits.

Both APIs (AMI ``/process`` and ``/v1/classify``) go through
:meth:`ServeEngine.classify`; they differ only in how they present the outcome.
Fetching is async (httpx), decoding runs in worker threads (Pillow releases the
GIL), and the model runs in each model's :class:`DynamicBatcher`. Whatever
goes wrong with one image is that image's error; the images of a request run
in one task group, so none outlives the request's admission.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import anyio
import numpy as np
from PIL import Image

from moths_framework.images import DecodedImage, decode_rgb
from moths_framework.inference.detector import Detection
from moths_framework.messages import one_line
from moths_framework.serve.batching import Admission, BatchResult, DynamicBatcher, Overloaded
from moths_framework.serve.fetch import ImageFetcher
from moths_framework.serve.image_errors import ImageTooLarge, ModelFailed, per_image_error
from moths_framework.serve.limits import ByteBudget
from moths_framework.serve.network_policy import CheckedNetwork
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
    "filter_key",
]

logger = logging.getLogger(__name__)
_MB = 2**20


@dataclass(frozen=True)
class ServeOptions:
    """The server's knobs; the defaults are ``moths-serve``'s.

    Attributes:
        max_batch: images per model call at most.
        max_wait_ms: how long the first image of a batch waits for others.
        max_in_flight: images admitted at once over all requests; beyond, 503.
        request_timeout: seconds a request may take before it is answered 504.
        fetch_timeout: seconds to fetch one image once it has a connection slot.
        fetch_connections: images downloading at once over all requests.
        fetch_per_request: images of one request downloading at once (a fair share).
        fetch_budget_bytes: bytes fetched but not yet decoded, over all requests;
            downloads wait for room.
        max_image_bytes: the largest image file fetched or accepted.
        max_pixels: the largest image (width x height from its header) decoded;
            a JPEG over it decodes at a reduced scale if that fits.
        max_body_bytes: the largest request body (multipart uploads).
        max_json_bytes: the largest request body that is not multipart (JSON).
        body_budget_bytes: request bodies held at once; beyond, 503.
        allow_hosts: if given, the only hosts images are fetched from.
        deny_private_networks: fetch only from public addresses, checked after
            DNS resolution and on every redirect.
        decode_workers: threads decoding images; default ``min(8, cpu_count)``.
        token: if given, every endpoint but ``/livez`` and ``/readyz`` needs
            ``Authorization: Bearer <token>``.
    """

    max_batch: int = 32
    max_wait_ms: float = 10.0
    max_in_flight: int = 512
    request_timeout: float = 120.0
    fetch_timeout: float = 10.0
    fetch_connections: int = 64
    fetch_per_request: int = 16
    fetch_budget_bytes: int = 256 * _MB
    max_image_bytes: int = 30 * _MB
    max_pixels: int = 40_000_000
    max_body_bytes: int = 64 * _MB
    max_json_bytes: int = 4 * _MB
    body_budget_bytes: int = 256 * _MB
    allow_hosts: Collection[str] | None = None
    deny_private_networks: bool = False
    decode_workers: int | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if self.fetch_budget_bytes < self.max_image_bytes:
            raise ValueError("the fetch budget must hold at least one image of the largest size")
        if self.body_budget_bytes < self.max_body_bytes:
            raise ValueError("the body budget must hold at least one body of the largest size")


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
    """The models, their batchers, the fetcher and the decoders of one server.

    Args:
        on_fatal: called with a one-line message if the server cannot serve at
            all (a model fails its warm-up); default: log it.
    """

    def __init__(
        self,
        models: Sequence[ServedModel],
        options: ServeOptions,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        slugs = [m.slug for m in models]
        duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
        if duplicates:
            raise ValueError(f"two models share the pipeline slug {', '.join(duplicates)}")
        self.models = {m.slug: m for m in models}
        self.options = options
        self.admission = Admission(options.max_in_flight)
        self.fetch_budget = ByteBudget(options.fetch_budget_bytes)
        self.ready = False
        self.batchers: dict[str, DynamicBatcher] = {}
        self._on_fatal = on_fatal or logger.error
        self._fetcher: ImageFetcher | None = None
        self._decoders: anyio.CapacityLimiter | None = None
        self._warm_up: asyncio.Task[None] | None = None
        self._detectors: dict[str, ThreadPoolExecutor] = {}  # one thread per detector session
        # Crops being preprocessed or waiting for their model, over all requests: a frame
        # may have hundreds of boxes, so crops wait for a slot where images are refused.
        self.crop_slots = asyncio.Semaphore(options.max_in_flight)

    def model(self, slug: str) -> ServedModel:
        if slug not in self.models:
            raise UnknownModel(
                f"unknown pipeline {slug!r}; this service has {', '.join(self.models)}"
            )
        return self.models[slug]

    async def start(self) -> None:
        """Start batchers, fetcher and decoders; warm the models up in the background."""
        o = self.options
        self._fetcher = ImageFetcher(
            o.fetch_timeout,
            o.max_image_bytes,
            o.allow_hosts,
            connections=o.fetch_connections,
            network=CheckedNetwork() if o.deny_private_networks else None,
            budget=self.fetch_budget,
        )
        self._decoders = anyio.CapacityLimiter(o.decode_workers or min(8, os.cpu_count() or 1))
        for slug, model in self.models.items():
            model.classifier.keep_features()  # /v1/classify may ask for them
            batcher = DynamicBatcher(
                model.classifier.model_outputs, o.max_batch, o.max_wait_ms / 1e3, name=slug
            )
            batcher.start()
            self.batchers[slug] = batcher
            if model.filter is not None:
                run = model.filter.model.model_outputs
                batcher = DynamicBatcher(run, o.max_batch, o.max_wait_ms / 1e3, name=f"{slug}-f")
                batcher.start()
                self.batchers[filter_key(slug)] = batcher
            if model.detector is not None:
                self._detectors[slug] = ThreadPoolExecutor(1, thread_name_prefix=f"moths-{slug}-d")
        self._warm_up = asyncio.get_running_loop().create_task(self._warm())

    async def stop(self) -> None:
        """Finish queued work, then release threads and connections."""
        if self._warm_up is not None:
            self._warm_up.cancel()
            await asyncio.gather(self._warm_up, return_exceptions=True)
        for batcher in self.batchers.values():
            await batcher.stop()
        for thread in self._detectors.values():
            thread.shutdown(wait=True)
        if self._fetcher is not None:
            await self._fetcher.aclose()

    async def _warm(self) -> None:
        # The first ONNX Runtime call allocates and (on GPU) picks kernels: done
        # before /readyz says yes, so the first real request is not the slow one.
        for slug, model in self.models.items():
            height, width = model.classifier.metadata.preprocessing.input_size
            try:
                await self.batchers[slug].classify(np.zeros((3, height, width), np.float32))
                if model.filter is not None:
                    height, width = model.filter.model.metadata.preprocessing.input_size
                    zeros = np.zeros((3, height, width), np.float32)
                    await self.batchers[filter_key(slug)].classify(zeros)
                if model.detector is not None:
                    await self.detect(model, Image.new("RGB", (64, 48)), (64, 48))
            except Exception as error:  # the server can never be ready: say so, once
                self._on_fatal(f"warm-up of pipeline {slug} failed: {one_line(error)}")
                return
            logger.info("pipeline %s ready on %s", slug, model.classifier.provider)
        self.ready = True

    async def classify(self, slug: str, images: Sequence[ImageRequest]) -> list[ImageOutcome]:
        """Classify ``images`` with model ``slug``; one outcome per image, in order.

        Raises:
            UnknownModel, NotReady, Overloaded, RequestTimeout: the request as a
            whole is refused; per-image failures are outcomes with ``error``.
            On a timeout every image's work has stopped before this returns.
        """
        model = self.model(slug)
        outcomes = [ImageOutcome(image, error="not classified") for image in images]
        share = self.request_share()

        async def one(index: int) -> None:
            outcomes[index] = await self._one(model, images[index], share)

        await self.run_admitted(len(images), [partial(one, i) for i in range(len(images))])
        return outcomes

    async def run_admitted(self, count: int, jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Run ``jobs`` at once under ``count`` images of admission and the request timeout.

        Raises:
            NotReady, Overloaded, RequestTimeout: as :meth:`classify`; on a timeout
            every job has stopped before this returns.
        """
        if not self.ready:
            raise NotReady("models are loading")
        self.admission.acquire(count)
        try:
            with anyio.fail_after(self.options.request_timeout):
                async with anyio.create_task_group() as group:
                    for job in jobs:
                        group.start_soon(job)
        except TimeoutError:
            raise RequestTimeout(f"request took over {self.options.request_timeout:g} s") from None
        finally:
            self.admission.release(count)  # after the task group: nothing runs on

    def request_share(self) -> asyncio.Semaphore:
        """One request's share of the connection slots (``fetch_per_request``)."""
        return asyncio.Semaphore(self.options.fetch_per_request)

    async def fetch_image(self, url: str, share: asyncio.Semaphore) -> DecodedImage:
        """The image at ``url``, decoded (RGB, EXIF orientation applied, within
        ``max_pixels``: a larger JPEG decodes smaller, ``full_size`` says how large)."""
        async with self._fetcher.fetched(url, share) as data:
            if len(data) > self.options.max_image_bytes:
                raise ImageTooLarge(f"image is over {self.options.max_image_bytes} bytes")
            return await anyio.to_thread.run_sync(
                _full, data, self.options.max_pixels, limiter=self._decoders
            )

    async def in_decoder(self, work: Callable[..., object], *args: object) -> object:
        """``work(*args)`` on a decoding thread (cutting and preprocessing crops)."""
        return await anyio.to_thread.run_sync(work, *args, limiter=self._decoders)

    async def detect(
        self, model: ServedModel, image: Image.Image, full_size: tuple[int, int]
    ) -> tuple[list[Detection], float]:
        """The boxes the pipeline's detector finds on ``image`` (a decode of a frame of
        ``full_size``), in the frame's pixels, and the detector's seconds."""
        detector = model.detector.model

        def run() -> tuple[list[Detection], float]:
            started = time.perf_counter()
            found = detector.detect_input(detector.model_input(image, full_size), full_size)
            return found, time.perf_counter() - started

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._detectors[model.slug], run)
        except Exception as error:
            raise ModelFailed(one_line(error)) from error

    async def classify_array(self, key: str, array: np.ndarray) -> BatchResult:
        """One preprocessed crop through batcher ``key`` (a slug, or :func:`filter_key`)."""
        try:
            return await self.batchers[key].classify(array)
        except Exception as error:
            raise ModelFailed(one_line(error)) from error

    async def _one(
        self, model: ServedModel, image: ImageRequest, share: asyncio.Semaphore
    ) -> ImageOutcome:
        try:
            if image.data is not None:
                array, size = await self._decode(model, image.data)
            else:
                async with self._fetcher.fetched(image.url or "", share) as data:
                    array, size = await self._decode(model, data)
            try:
                result = await self.batchers[model.slug].classify(array)
            except Exception as error:
                raise ModelFailed(one_line(error)) from error
        except Exception as error:  # whatever goes wrong with one image is its own error
            return ImageOutcome(image, error=per_image_error(image.id, image.url, error))
        return ImageOutcome(image, size=size, result=result)

    async def _decode(self, model: ServedModel, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        if len(data) > self.options.max_image_bytes:
            raise ImageTooLarge(f"image is over {self.options.max_image_bytes} bytes")
        # Not abandoned on cancel: the request waits for its decodes to end.
        return await anyio.to_thread.run_sync(
            _decoded, model, data, self.options.max_pixels, limiter=self._decoders
        )


def filter_key(slug: str) -> str:
    """The batcher of pipeline ``slug``'s filter."""
    return f"{slug}#filter"


def _full(data: bytes, max_pixels: int) -> DecodedImage:
    return decode_rgb(data, max_pixels=max_pixels)


def _decoded(
    model: ServedModel, data: bytes, max_pixels: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """The project's one decoder (format list, pixel cap), then preprocessing."""
    decoded = decode_rgb(data, max_pixels=max_pixels)
    return model.classifier.preprocess(decoded.image), decoded.full_size
