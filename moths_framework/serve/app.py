"""The FastAPI application: the AMI processing-service endpoints and our ``/v1`` API.

Build it with :func:`create_app` from loaded models; ``moths-serve`` runs it
under uvicorn. Whole-request refusals are HTTP statuses (422 unknown pipeline
or bad body, 413 too large, 401 no token, 503 + ``Retry-After`` loading or
overloaded, 504 too slow); an image that cannot be fetched or decoded is
reported per image and the others are still answered.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError

from moths_framework.serve import ami, v1
from moths_framework.serve.auth import BearerAuth, BodyLimit
from moths_framework.serve.engine import (
    ImageOutcome,
    ImageRequest,
    NotReady,
    Overloaded,
    RequestTimeout,
    ServeEngine,
    ServeOptions,
    UnknownModel,
)
from moths_framework.serve.schemas_ami import (
    PipelineRequest,
    PipelineResultsError,
    PipelineResultsResponse,
    ProcessingServiceInfoResponse,
    SourceImageResponse,
)
from moths_framework.serve.schemas_v1 import (
    ClassifyOptions,
    ClassifyRequest,
    ClassifyResponse,
    ModelsResponse,
)
from moths_framework.serve.served import ServedModel

__all__ = ["create_app"]

SERVICE_NAME = "moths-framework"
_CLASSIFY_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ClassifyRequest"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "model": {"type": "string"},
                        "top_k": {"type": "integer"},
                        "thresholds": {"type": "string", "description": "species=0.6,genus=0.5"},
                        "species_list": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["files"],
                }
            },
        },
        "required": True,
    }
}


def create_app(models: Sequence[ServedModel], options: ServeOptions | None = None) -> FastAPI:
    """The service for ``models`` (each its own pipeline), with ``options``' limits."""
    options = options or ServeOptions()
    engine = ServeEngine(models, options)
    info = ProcessingServiceInfoResponse(
        name=SERVICE_NAME,
        description="Moth species classifiers (whole image), served by moths-serve",
        pipelines=[ami.pipeline_config(m) for m in models],
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        yield
        await engine.stop()

    app = FastAPI(title="moths-serve", lifespan=lifespan)
    app.state.engine = engine
    app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes)
    if options.token:
        app.add_middleware(BearerAuth, token=options.token)  # added last: runs first
    _add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/livez", tags=["health checks"])
    async def livez() -> JSONResponse:
        return JSONResponse({"status": True})

    @app.get("/readyz", tags=["health checks"])
    async def readyz() -> JSONResponse:
        if engine.ready:
            return JSONResponse({"status": list(engine.models)})
        return JSONResponse({"status": []}, status_code=503)

    @app.get("/info", tags=["services"])
    async def service_info() -> ProcessingServiceInfoResponse:
        return info

    @app.post("/pipeline/process/", deprecated=True, tags=["services"])
    @app.post("/process", tags=["services"])
    @app.post("/process/", tags=["services"])
    async def process(data: PipelineRequest) -> PipelineResultsResponse:
        started = time.perf_counter()
        model = engine.model(data.pipeline)
        unique = list({image.id: image for image in data.source_images}.values())
        _check_count(len(unique), options)
        requests = [ImageRequest(id=image.id, url=image.url) for image in unique]
        outcomes = await engine.classify(model.slug, requests)
        return PipelineResultsResponse(
            pipeline=model.slug,
            algorithms={},
            total_time=time.perf_counter() - started,
            source_images=[SourceImageResponse(id=i.id, url=i.url) for i in unique],
            detections=[_detection(model, o) for o in outcomes if o.error is None],
            errors=[
                PipelineResultsError(error=o.error, image_id=o.image.id)
                for o in outcomes
                if o.error is not None
            ],
        )

    @app.post("/v1/classify", tags=["v1"], openapi_extra=_CLASSIFY_BODY)
    async def classify(request: Request) -> ClassifyResponse:
        """Classify images sent as multipart ``files`` or as JSON ``{images: [{id, url|b64}]}``."""
        body, images = await _classify_request(request, options)
        model = engine.model(body.model or _only_model(engine))
        try:
            classifier = v1.with_options(model, body.thresholds, body.species_list)
        except ValueError as error:  # unknown rank/species, bad threshold
            raise HTTPException(422, str(error)) from None
        outcomes = await engine.classify(model.slug, images)
        return ClassifyResponse(
            model=model.slug, results=v1.classify_results(classifier, outcomes, body.top_k)
        )

    @app.get("/v1/models", tags=["v1"])
    async def list_models() -> ModelsResponse:
        return ModelsResponse(models=[v1.model_info(m) for m in models])

    return app


def _detection(model: ServedModel, outcome: ImageOutcome):  # noqa: ANN202 (schema type)
    result = outcome.result
    return ami.detection(
        model, outcome.image.id, outcome.size, result.logits, result.seconds_per_image
    )


def _check_count(count: int, options: ServeOptions) -> None:
    if count > options.max_in_flight:
        raise HTTPException(
            413, f"{count} images in one request; at most {options.max_in_flight}: split it"
        )
    if count == 0:
        raise HTTPException(422, "no images in the request")


def _only_model(engine: ServeEngine) -> str:
    if len(engine.models) != 1:
        raise HTTPException(422, f"name a model: one of {', '.join(engine.models)}")
    return next(iter(engine.models))


async def _classify_request(
    request: Request, options: ServeOptions
) -> tuple[ClassifyOptions, list[ImageRequest]]:
    """The options and images of a ``/v1/classify`` request, JSON or multipart."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            body, images = await _multipart(request)
        else:
            body = ClassifyRequest.model_validate_json(await request.body())
            images = [_json_image(i, image) for i, image in enumerate(body.images)]
    except ValidationError as error:
        raise HTTPException(422, error.errors(include_url=False, include_context=False)) from None
    _check_count(len(images), options)
    return body, images


def _json_image(index: int, image) -> ImageRequest:  # noqa: ANN001 (ClassifyImage)
    image_id = image.id if image.id is not None else str(index)
    if image.url is not None:
        return ImageRequest(id=image_id, url=image.url)
    try:
        data = base64.b64decode(image.b64, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"image {image_id}: b64 is not valid base64") from None
    return ImageRequest(id=image_id, data=data, name=image_id)


async def _multipart(request: Request) -> tuple[ClassifyOptions, list[ImageRequest]]:
    form = await request.form()
    files = [f for f in form.getlist("files") if hasattr(f, "read")]
    if not files:
        raise HTTPException(422, "multipart request without 'files'")
    images = []
    for index, upload in enumerate(files):
        name = upload.filename or str(index)
        images.append(ImageRequest(id=str(index), data=await upload.read(), name=name))
    body = ClassifyOptions.model_validate(
        {
            "model": form.get("model"),
            "top_k": form.get("top_k") or 5,
            "thresholds": _parse_thresholds(str(form.get("thresholds") or "")),
            "species_list": [str(s) for s in form.getlist("species_list")] or None,
        }
    )
    return body, images


def _parse_thresholds(text: str) -> dict[str, float] | None:
    """``species=0.6,genus=0.5`` -> {rank: value} (the form of ``moths-infer --thresholds``)."""
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        rank, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            result[rank.strip()] = float(value)
        except ValueError:
            raise HTTPException(
                422, f"thresholds: expected RANK=PROBABILITY, got {item!r}"
            ) from None
    return result or None


def _add_error_handlers(app: FastAPI) -> None:
    def handler(status: int, retry_after: str | None = None):  # noqa: ANN202
        async def respond(request: Request, error: Exception) -> JSONResponse:
            headers = {"Retry-After": retry_after} if retry_after else None
            return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

        return respond

    app.add_exception_handler(UnknownModel, handler(422))
    app.add_exception_handler(NotReady, handler(503, "5"))
    app.add_exception_handler(Overloaded, handler(503, "1"))
    app.add_exception_handler(RequestTimeout, handler(504))
