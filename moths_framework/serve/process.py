"""One AMI ``PipelineRequest`` processed, without HTTP: ``/process`` and the pull worker share it.

:func:`process_pipeline_request` takes a parsed request and answers the
``PipelineResultsResponse`` wire object as a dict (scores and logits as float32
numpy arrays, rendered by :func:`.json_body.render`). Each source image is
answered in one of three ways:

- it has ``detections`` in the request (Antenna reprocessing what it already
  found): each one's crop is classified (its ``crop_image_url`` when given and
  fetchable, else its ``bbox`` cut from the source image, fetched once however
  many boxes it has), and each is answered with its bbox and its own algorithm;
- else the pipeline has a detector: it finds the boxes, and each crop is classified;
- else the whole image is the one box (a classify-only pipeline).

With a filter, a box goes on to the classifier only if the filter calls it a
moth; any other box is answered with the filter's classification only.
Whole-request refusals are the engine's exceptions (:class:`~.engine.UnknownModel`,
``NotReady``, ``Overloaded``, ``RequestTimeout``); an image that cannot be
fetched is that image's entry in ``errors``, a box outside its image that box's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from operator import methodcaller
from typing import Any

from moths_framework.images import DecodedImage
from moths_framework.inference.pipeline import crop_box
from moths_framework.serve import ami
from moths_framework.serve.engine import ImageRequest, ServeEngine, filter_key
from moths_framework.serve.image_errors import per_image_error
from moths_framework.serve.schemas_ami import DetectionRequest, PipelineRequest, SourceImageRequest
from moths_framework.serve.served import ServedModel

__all__ = ["process_pipeline_request", "unique_images"]

Box = tuple[float, float, float, float]
# A stage's classifier -> its input array for one crop: its preprocess of a fetched crop,
# or its crop_input of a box, cut straight from the frame as the offline Pipeline cuts.
ModelInput = Callable[[Any], Any]


def unique_images(request: PipelineRequest) -> list[SourceImageRequest]:
    """The request's source images, each id once (the first of duplicates), in order."""
    return list({image.id: image for image in request.source_images}.values())


async def process_pipeline_request(engine: ServeEngine, request: PipelineRequest) -> dict[str, Any]:
    """Process ``request`` on ``engine`` (started); the ``PipelineResultsResponse`` as a dict."""
    started = time.perf_counter()
    model = engine.model(request.pipeline)
    unique = unique_images(request)
    known = {image.id for image in unique}
    work = _Work(engine, model)
    given: dict[str, list[tuple[int, DetectionRequest]]] = {}
    for number, detection in enumerate(request.detections or [], start=1):
        image_id = detection.source_image.id
        if image_id in known:
            given.setdefault(image_id, []).append((number, detection))
        else:
            work.fail(image_id, f"detection {number}: its image is not in source_images")
    # Without a box from anywhere and without a filter, an image is classified whole,
    # preprocessed as it is decoded (the fast path of a classify-only pipeline).
    boxed = model.detector is not None or model.filter is not None
    whole = [i for i in unique if i.id not in given and not boxed]
    jobs = [partial(work.image, i, given.get(i.id)) for i in unique if i.id in given or boxed]
    if jobs:  # images are admitted; their boxes wait for the engine's crop slots
        await engine.run_admitted(len(jobs), jobs)
    if whole:
        await work.whole_images(whole)
    order = {image.id: n for n, image in enumerate(unique)}
    return {
        "pipeline": model.slug,
        "algorithms": {},
        "total_time": time.perf_counter() - started,
        "source_images": [{"id": i.id, "url": i.url} for i in unique],
        "detections": ami.answers(model, work.answered(order)),
        "errors": sorted(work.errors, key=lambda e: order.get(e["image_id"], -1)),
    }


class _Work:
    """The boxes of one request: fetch, detect, cut, filter, classify; answers and errors.

    Each box takes its slot when it is known, so the answers keep the request's order
    (an image's boxes as sent, or as the detector ranked them) whatever finishes first.
    """

    def __init__(self, engine: ServeEngine, model: ServedModel) -> None:
        self.engine = engine
        self.model = model
        self.share = engine.request_share()
        self.slots: list[ami.Answer | None] = []
        self.errors: list[dict[str, Any]] = []

    def fail(self, image_id: str, message: str) -> None:
        self.errors.append({"error": message, "image_id": image_id})

    def answered(self, order: dict[str, int]) -> list[ami.Answer]:
        done = [answer for answer in self.slots if answer is not None]
        return sorted(done, key=lambda answer: order[answer.image_id])  # stable

    async def whole_images(self, images: list[SourceImageRequest]) -> None:
        requests = [ImageRequest(id=image.id, url=image.url) for image in images]
        for outcome in await self.engine.classify(self.model.slug, requests):
            if outcome.error is not None:
                self.fail(outcome.image.id, outcome.error)
                continue
            whole = (0.0, 0.0, *map(float, outcome.size))
            reference = ami.WHOLE_IMAGE_REFERENCE
            self.slots.append(ami.Answer(outcome.image.id, whole, reference, result=outcome.result))

    async def image(
        self, image: SourceImageRequest, given: list[tuple[int, DetectionRequest]] | None
    ) -> None:
        """One source image: the boxes Antenna sent, else the detector's, else the whole."""
        source = _Once(partial(self.engine.fetch_image, image.url, self.share))
        if given is not None:
            jobs = [partial(self._given, image, d, n, source, self._slot()) for n, d in given]
        else:
            decoded = await self._source(source)
            boxes = await self._find(image, decoded) if decoded is not None else []
            jobs = [partial(self._box, box, decoded, None, self._slot()) for box in boxes]
        if jobs:
            await asyncio.gather(*(job() for job in jobs))
        if source.error is not None:
            self.fail(image.id, per_image_error(image.id, image.url, source.error))

    def _slot(self) -> int:
        self.slots.append(None)
        return len(self.slots) - 1

    async def _source(self, source: _Once) -> DecodedImage | None:
        try:
            return await source.get()
        except Exception:  # reported once for the image, by image()
            return None

    async def _find(self, image: SourceImageRequest, decoded: DecodedImage) -> list[ami.Answer]:
        """The detector's boxes, or the whole image without a detector."""
        if self.model.detector is None:
            whole = (0.0, 0.0, *map(float, decoded.full_size))
            return [ami.Answer(image.id, whole, ami.WHOLE_IMAGE_REFERENCE)]
        try:
            found, seconds = await self.engine.detect(self.model, decoded.image, decoded.full_size)
        except Exception as error:
            self.fail(image.id, per_image_error(image.id, image.url, error))
            return []
        reference = ami.detector_reference(self.model)
        return [ami.Answer(image.id, d.box, reference, seconds) for d in found]

    async def _given(
        self, image: SourceImageRequest, detection: DetectionRequest, number: int,
        source: _Once, slot: int,
    ) -> None:  # fmt: skip
        """A box Antenna sent: from its crop's URL when that can be fetched, else cut
        from the source image."""
        bbox = detection.bbox
        box = (bbox.x1, bbox.y1, bbox.x2, bbox.y2) if bbox is not None else None
        reference = detection.algorithm.model_dump()
        answer = ami.Answer(image.id, box, reference, 0.0, detection.crop_image_url)
        if box is None:
            self.fail(image.id, f"detection {number}: no bbox")
            return
        if detection.crop_image_url:
            try:
                crop = await self.engine.fetch_image(detection.crop_image_url, self.share)
            except Exception:  # e.g. not cut yet on Antenna's side: cut it from the source
                crop = None
            if crop is not None:
                await self._classify(answer, methodcaller("preprocess", crop.image), slot)
                return
        decoded = await self._source(source)
        if decoded is not None:
            await self._box(answer, decoded, number, slot)

    async def _box(
        self, answer: ami.Answer, decoded: DecodedImage, number: int | None, slot: int
    ) -> None:
        width, height = decoded.full_size
        which = f"detection {number}" if number is not None else "the detector's box"
        problem = _box_problem(answer.bbox, width, height)
        if problem is not None:
            self.fail(answer.image_id, f"{which}: {problem}")
            return
        cut = _cut(decoded, answer.bbox, self.model.crop_margin)
        await self._classify(answer, methodcaller("crop_input", decoded.image, cut), slot)

    async def _classify(self, answer: ami.Answer, model_input: ModelInput, slot: int) -> None:
        """Classify one crop; ``model_input`` makes a stage's input from it."""
        model = self.model
        try:
            if model.filter is not None:
                filtered = await self._run(model.filter.model, filter_key(model.slug), model_input)
                answer = replace(answer, filter=filtered, moth=_is_moth(model, filtered))
                if not answer.moth:
                    self.slots[slot] = answer
                    return
            result = await self._run(model.classifier, model.slug, model_input)
            answer = replace(answer, result=result)
        except Exception as error:  # ModelFailed: logged, the client gets a reference
            self.fail(answer.image_id, per_image_error(answer.image_id, None, error))
            return
        self.slots[slot] = answer

    async def _run(self, classifier: Any, key: str, model_input: ModelInput) -> Any:
        async with self.engine.crop_slots:  # bounds the preprocessed crops held at once
            array = await self.engine.in_decoder(model_input, classifier)
            return await self.engine.classify_array(key, array)


def _is_moth(model: ServedModel, result: Any) -> bool:
    stage = model.filter.model
    rank = stage.hierarchy.ranks[0]
    probs = stage.probabilities_from_logits({rank: result.logits[rank][None]})[rank][0]
    return bool(probs[model.stages.filter_index()] >= model.stages.spec.filter.threshold)


def _box_problem(box: Box, width: int, height: int) -> str | None:
    """Why ``box`` cannot be cut from a ``width`` x ``height`` image, or ``None``."""
    x1, y1, x2, y2 = box
    shown = ",".join(f"{v:g}" for v in box)
    if not all(math.isfinite(v) for v in box) or x2 <= x1 or y2 <= y1:
        return f"bbox {shown} is empty (x2 > x1 and y2 > y1 are needed)"
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return f"bbox {shown} is outside the {width}x{height} image"
    return None


def _cut(decoded: DecodedImage, box: Box, margin: int) -> tuple[int, int, int, int]:
    """The pixels to cut for ``box`` (the frame's pixels) from a decode of the frame,
    which may be smaller than the frame (a JPEG over ``max_pixels`` decodes at reduced
    scale)."""
    image = decoded.image
    sx, sy = image.width / decoded.full_size[0], image.height / decoded.full_size[1]
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    return crop_box(scaled, round(margin * sx), image.width, image.height)


class _Once:
    """An image fetched at most once, however many boxes wait for it; its error kept."""

    def __init__(self, fetch: Callable[[], Awaitable[DecodedImage]]) -> None:
        self._fetch = fetch
        self._task: asyncio.Task[DecodedImage] | None = None
        self.error: BaseException | None = None

    async def get(self) -> DecodedImage:
        if self._task is None:
            self._task = asyncio.ensure_future(self._fetch())
        try:
            return await self._task
        except Exception as error:
            self.error = error
            raise
