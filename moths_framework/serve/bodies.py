"""Reading request bodies: ``/process`` JSON, and ``/v1/classify`` as JSON or multipart.

The endpoints read their bodies themselves, so that a large JSON body is
parsed off the event loop and its images are counted before pydantic builds a
model of each: validation holds the GIL (it would stall ``/livez`` too), so a
request over the image limit is refused after the cheap ``json.loads`` alone.
A body that does not validate is a 422 listing pydantic's errors.
"""

from __future__ import annotations

import base64
import binascii
import json

import anyio
from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from moths_framework.inference.thresholds import parse_thresholds
from moths_framework.serve.engine import ImageRequest
from moths_framework.serve.schemas_ami import PipelineRequest
from moths_framework.serve.schemas_v1 import ClassifyImage, ClassifyOptions, ClassifyRequest

__all__ = ["read_classify_request", "read_pipeline_request"]

_IN_LOOP = 64 * 1024  # bytes of JSON parsed in the event loop; larger bodies go to a thread


async def read_pipeline_request(request: Request, max_images: int) -> PipelineRequest:
    """The ``/process`` body.

    Raises:
        HTTPException: 422 if it is not a valid ``PipelineRequest``, 413 if it
            names more than ``max_images`` distinct images.
    """
    return await _parsed(PipelineRequest, await request.body(), "source_images", max_images)


async def read_classify_request(
    request: Request, max_images: int
) -> tuple[ClassifyOptions, list[ImageRequest]]:
    """The options and images of a ``/v1/classify`` request, JSON or multipart.

    Raises:
        HTTPException: 422 for a body that does not validate, bad base64, a
            multipart request without files or with malformed thresholds; 413
            for more than ``max_images`` images.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        try:
            return await _multipart(request)
        except ValidationError as error:
            raise HTTPException(422, _errors(error)) from None
    body = await _parsed(ClassifyRequest, await request.body(), "images", max_images)
    return body, [_json_image(i, image) for i, image in enumerate(body.images)]


def too_many_images(count: int, max_images: int) -> HTTPException:
    return HTTPException(413, f"{count} images in one request; at most {max_images}: split it")


async def _parsed(model: type[BaseModel], body: bytes, images: str, max_images: int) -> BaseModel:
    try:
        if len(body) <= _IN_LOOP:
            return _validated(model, body, images, max_images)
        return await anyio.to_thread.run_sync(_validated, model, body, images, max_images)
    except ValidationError as error:
        raise HTTPException(422, _errors(error)) from None


def _validated(model: type[BaseModel], body: bytes, images: str, max_images: int) -> BaseModel:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:  # also: not UTF-8, nested too deep
        detail = {"type": "json_invalid", "loc": ["body"], "msg": f"Invalid JSON: {error}"}
        raise HTTPException(422, [detail]) from None
    listed = data.get(images) if isinstance(data, dict) else None
    if isinstance(listed, list) and len(listed) > max_images:  # duplicates count too
        raise too_many_images(len(listed), max_images)
    return model.model_validate(data)


def _errors(error: ValidationError) -> list:
    return error.errors(include_url=False, include_context=False, include_input=False)


def _json_image(index: int, image: ClassifyImage) -> ImageRequest:
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
            "thresholds": _form_thresholds(str(form.get("thresholds") or "")),
            "species_list": [str(s) for s in form.getlist("species_list")] or None,
            "features": form.get("features") or False,
        }
    )
    return body, images


def _form_thresholds(text: str) -> dict[str, float] | None:
    """The form's ``thresholds`` text (``moths-infer --thresholds``'s syntax); None when blank."""
    try:
        return parse_thresholds(text) or None
    except ValueError as error:
        raise HTTPException(422, f"thresholds: {error}") from None
