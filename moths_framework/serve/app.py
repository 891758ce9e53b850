"""The FastAPI application: the AMI processing-service endpoints and our ``/v1`` API.

Build it with :func:`create_app` from loaded models; ``moths-serve`` runs it
under uvicorn. Whole-request refusals are HTTP statuses (422 unknown pipeline
or bad body, 413 too large, 401 no token, 503 + ``Retry-After`` loading or
overloaded, 504 too slow); an image that cannot be fetched or decoded is
reported per image and the others are still answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from moths_framework.serve import ami, v1
from moths_framework.serve.auth import BearerAuth
from moths_framework.serve.bodies import (
    read_classify_request,
    read_pipeline_request,
    too_many_images,
)
from moths_framework.serve.engine import (
    NotReady,
    Overloaded,
    RequestTimeout,
    ServeEngine,
    ServeOptions,
    UnknownModel,
)
from moths_framework.serve.json_body import FastJSONResponse
from moths_framework.serve.limits import BodyLimit, ByteBudget
from moths_framework.serve.openapi import CLASSIFY_BODY, PROCESS_BODY, install_openapi
from moths_framework.serve.process import process_pipeline_request, unique_images
from moths_framework.serve.schemas_ami import (
    PipelineResultsResponse,
    ProcessingServiceInfoResponse,
)
from moths_framework.serve.schemas_v1 import ClassifyResponse, ModelsResponse
from moths_framework.serve.served import ServedModel

__all__ = ["create_app"]

SERVICE_NAME = "moths-framework"


def create_app(
    models: Sequence[ServedModel],
    options: ServeOptions | None = None,
    on_fatal: Callable[[str], None] | None = None,
) -> FastAPI:
    """The service for ``models`` (each its own pipeline), with ``options``' limits.

    Args:
        on_fatal: called with one line if the service can never be ready (a
            model fails its warm-up); ``moths-serve`` then exits. Default: log it.
    """
    options = options or ServeOptions()
    engine = ServeEngine(models, options, on_fatal)
    info = ProcessingServiceInfoResponse(
        name=SERVICE_NAME,
        description="Moth pipelines (detector, moth filter, species classifier, or the whole "
        "image), served by moths-serve",
        pipelines=[ami.pipeline_config(m) for m in models],
    )
    info_body = info.model_dump_json().encode()  # every label of every rank: rendered once
    process_route = {
        "tags": ["services"],
        "openapi_extra": PROCESS_BODY,
        "response_model": PipelineResultsResponse,
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        yield
        await engine.stop()

    app = FastAPI(title="moths-serve", lifespan=lifespan)
    app.state.engine = engine
    app.add_middleware(
        BodyLimit,
        max_multipart=options.max_body_bytes,
        max_json=options.max_json_bytes,
        budget=ByteBudget(options.body_budget_bytes),
    )
    if options.token:
        app.add_middleware(BearerAuth, token=options.token)  # added last: runs first
    _add_error_handlers(app)
    install_openapi(app, [m.slug for m in models])

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

    @app.get("/info", tags=["services"], response_model=ProcessingServiceInfoResponse)
    async def service_info() -> Response:
        return FastJSONResponse(info_body)

    @app.post("/pipeline/process/", deprecated=True, **process_route)
    @app.post("/process", **process_route)
    @app.post("/process/", **process_route)
    async def process(request: Request) -> Response:
        """Process the source images of an AMI pipeline request (see :mod:`.process`)."""
        data = await read_pipeline_request(request, options.max_in_flight)
        engine.model(data.pipeline)  # an unknown pipeline is a 422 before anything is counted
        _check_count(len(unique_images(data)), options)
        # The wire object of PipelineResultsResponse, rendered by orjson (see json_body).
        return FastJSONResponse(await process_pipeline_request(engine, data))

    @app.post("/v1/classify", tags=["v1"], openapi_extra=CLASSIFY_BODY)
    async def classify(request: Request) -> ClassifyResponse:
        """Classify images sent as multipart ``files`` or as JSON ``{images: [{id, url|b64}]}``."""
        body, images = await read_classify_request(request, options.max_in_flight)
        _check_count(len(images), options)
        model = engine.model(body.model or _only_model(engine))
        try:
            classifier = v1.with_options(model, body.thresholds, body.species_list)
        except ValueError as error:  # unknown rank/species, bad threshold
            raise HTTPException(422, str(error)) from None
        outcomes = await engine.classify(model.slug, images)
        return ClassifyResponse(
            model=model.slug,
            results=v1.classify_results(classifier, outcomes, body.top_k, body.features),
        )

    @app.get("/v1/models", tags=["v1"])
    async def list_models() -> ModelsResponse:
        return ModelsResponse(models=[v1.model_info(m) for m in models])

    return app


def _check_count(count: int, options: ServeOptions) -> None:
    if count > options.max_in_flight:
        raise too_many_images(count, options.max_in_flight)
    if count == 0:
        raise HTTPException(422, "no images in the request")


def _only_model(engine: ServeEngine) -> str:
    if len(engine.models) != 1:
        raise HTTPException(422, f"name a model: one of {', '.join(engine.models)}")
    return next(iter(engine.models))


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
