"""The OpenAPI schema: the request bodies that the endpoints read themselves, and the served
pipelines as the values ``pipeline`` and ``model`` may take.

``/process`` and ``/v1/classify`` parse their bodies themselves (large JSON off
the event loop, multipart by hand), so FastAPI does not see their models; their
schemas are added to ``components`` here, and the routes point at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from moths_framework.serve.schemas_ami import PipelineRequest
from moths_framework.serve.schemas_v1 import ClassifyRequest

__all__ = ["CLASSIFY_BODY", "PROCESS_BODY", "install_openapi"]

_REF = "#/components/schemas/{model}"

PROCESS_BODY = {
    "requestBody": {
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="PipelineRequest")}}},
        "required": True,
    }
}
CLASSIFY_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="ClassifyRequest")}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "model": {"type": "string"},
                        "top_k": {"type": "integer", "minimum": 1},
                        "thresholds": {"type": "string", "description": "species=0.6,genus=0.5"},
                        "species_list": {"type": "array", "items": {"type": "string"}},
                        "features": {"type": "boolean"},
                    },
                    "required": ["files"],
                }
            },
        },
        "required": True,
    }
}


def install_openapi(app: FastAPI, slugs: Sequence[str]) -> None:
    """Make ``app.openapi()`` include the request bodies and the pipeline slugs."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, tags=app.openapi_tags
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PipelineRequest, ClassifyRequest):
                _add_model(components, model)
            slug = {"type": "string", "enum": list(slugs)}
            components["PipelineRequest"]["properties"]["pipeline"].update(slug)
            components["ClassifyRequest"]["properties"]["model"]["anyOf"] = [slug, {"type": "null"}]
            form = CLASSIFY_BODY["requestBody"]["content"]["multipart/form-data"]["schema"]
            path = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
            properties = {**form["properties"], "model": slug}
            path["multipart/form-data"]["schema"] = {**form, "properties": properties}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _add_model(components: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template=_REF)
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components[model.__name__] = schema
