"""Our own plain API, ``/v1``: classify images, describe models. Kept apart from the AMI schemas."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ClassifyImage",
    "ClassifyOptions",
    "ClassifyRequest",
    "ClassifyResponse",
    "ClassifyResult",
    "ModelInfo",
    "ModelsResponse",
]


class ClassifyImage(BaseModel):
    """One image: by ``url`` (http/https) or inline as base64 ``b64``, exactly one of them."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: str | None = Field(default=None, description="Echoed in the result; default: the index.")
    url: str | None = Field(
        default=None, description="http(s) URL of the image.", json_schema_extra={"format": "uri"}
    )
    b64: str | None = Field(default=None, description="The image file, base64-encoded.")

    @model_validator(mode="after")
    def _one_source(self) -> ClassifyImage:
        if (self.url is None) == (self.b64 is None):
            raise ValueError("give exactly one of url and b64")
        return self


class ClassifyOptions(BaseModel):
    """The options of a classify request (multipart sends them as form fields)."""

    model: str | None = Field(
        default=None, description="Model slug (GET /v1/models); optional when one is served."
    )
    top_k: int = Field(default=5, ge=1, description="Classes reported per rank.")
    thresholds: dict[str, float] | None = Field(
        default=None, description="Roll-up threshold per rank; other ranks keep the model's."
    )
    species_list: list[str] | None = Field(
        default=None, description="Only these species (a regional checklist)."
    )
    features: bool = Field(
        default=False,
        description="Add each image's feature vector (the model's features output, what "
        "moths-infer --features writes) to its result as 'features'.",
    )


class ClassifyRequest(ClassifyOptions):
    images: list[ClassifyImage] = Field(min_length=1)


class ClassifyResult(BaseModel):
    """What ``moths-infer --output x.jsonl`` writes for one image, plus ``id``.

    Besides the fields below, each rank has ``<rank>`` (top-1 name, or the
    hierarchy-consistent path's class for a calibrated model) and ``<rank>_prob``;
    a model with a novelty detector adds ``novelty_score`` (distance from the
    trained species) and ``novel`` (bool); a request with ``features`` adds
    ``features`` (a list of floats; null for a model exported without that output).
    Every value is null when ``error`` is set.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    path: str
    prediction: str | None = None
    prediction_rank: str | None = None
    prediction_prob: float | None = None
    confident: bool | None = None
    error: str | None = None
    top_k: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class ClassifyResponse(BaseModel):
    model: str
    results: list[ClassifyResult]


class ModelInfo(BaseModel):
    slug: str
    name: str
    source: str
    sha256: str
    provider: str
    card: dict[str, Any]
    ranks: list[str]
    classes: dict[str, list[str]]
    thresholds: dict[str, float]
    calibration: dict[str, Any] = Field(
        description="temperature: rank -> softmax temperature; once moths-calibrate ran, "
        "rollup: the roll-up method, novelty: {method, threshold}"
    )
    preprocessing: dict[str, Any]


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
