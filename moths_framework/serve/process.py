"""One AMI ``PipelineRequest`` processed, without HTTP: ``/process`` and the pull worker share it.

:func:`process_pipeline_request` takes a parsed request and answers the
``PipelineResultsResponse`` wire object as a dict (scores and logits as float32
numpy arrays, rendered by :func:`.json_body.render`). Whole-request refusals are
the engine's exceptions (:class:`~.engine.UnknownModel`, ``NotReady``,
``Overloaded``, ``RequestTimeout``); anything that goes wrong with one image is
that image's entry in ``errors``.
"""

from __future__ import annotations

import time
from typing import Any

from moths_framework.serve import ami
from moths_framework.serve.engine import ImageRequest, ServeEngine
from moths_framework.serve.schemas_ami import PipelineRequest

__all__ = ["process_pipeline_request", "unique_images"]


def unique_images(request: PipelineRequest) -> list:
    """The request's source images, each id once (the first of duplicates), in order."""
    return list({image.id: image for image in request.source_images}.values())


async def process_pipeline_request(engine: ServeEngine, request: PipelineRequest) -> dict[str, Any]:
    """Process ``request`` on ``engine`` (started); the ``PipelineResultsResponse`` as a dict."""
    started = time.perf_counter()
    model = engine.model(request.pipeline)
    unique = unique_images(request)
    requests = [ImageRequest(id=image.id, url=image.url) for image in unique]
    outcomes = await engine.classify(model.slug, requests) if requests else []
    classified = [
        ami.ClassifiedImage(o.image.id, o.size, o.result.logits, o.result.seconds_per_image)
        for o in outcomes
        if o.error is None
    ]
    return {
        "pipeline": model.slug,
        "algorithms": {},
        "total_time": time.perf_counter() - started,
        "source_images": [{"id": i.id, "url": i.url} for i in unique],
        "detections": ami.detections(model, classified),
        "errors": [
            {"error": o.error, "image_id": o.image.id} for o in outcomes if o.error is not None
        ],
    }
