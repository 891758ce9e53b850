"""The AMI processing-service API: one pydantic model per wire object, named as on the wire.

Field for field after RolnickLab/ami-data-companion ``trapdata/api/schemas.py``
(the reference service) and RolnickLab/antenna ``ami/ml/schemas.py`` (the
platform that calls it). Where the two differ, the platform's side wins, since
it is what parses our answers: a request may carry ``detections`` and any
``config`` keys (Antenna's own start with ``request_``), and a response may
carry ``errors``. Requests ignore fields they do not know, as both sides do.
"""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AlgorithmCategoryMapResponse",
    "AlgorithmConfigResponse",
    "AlgorithmReference",
    "BoundingBox",
    "ClassificationResponse",
    "DetectionRequest",
    "DetectionResponse",
    "PipelineConfigResponse",
    "PipelineRequest",
    "PipelineResultsError",
    "PipelineResultsResponse",
    "PipelineStage",
    "PipelineStageParam",
    "ProcessingServiceInfoResponse",
    "SourceImageRequest",
    "SourceImageResponse",
]

_LENIENT = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class BoundingBox(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class AlgorithmReference(BaseModel):
    name: str
    key: str


class AlgorithmCategoryMapResponse(BaseModel):
    data: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Every label with its index and taxon_rank, in index order.",
    )
    labels: list[str] = Field(
        default_factory=list, description="The labels in the index order of the model's outputs."
    )
    version: str | None = Field(default=None, description="The version of the category map.")
    description: str | None = None
    uri: str | None = None


class AlgorithmConfigResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    key: str = Field(description="Unique key to look up the category map and other metadata.")
    description: str | None = None
    task_type: str | None = Field(
        default=None, description="'localization', 'classification', ...", examples=["detection"]
    )
    version: int = Field(default=1, description="Changes whenever the model (its labels) change.")
    version_name: str | None = None
    uri: str | None = None
    category_map: AlgorithmCategoryMapResponse | None = None


class ClassificationResponse(BaseModel):
    classification: str
    labels: list[str] | None = Field(
        default=None, description="Omitted: the category map of the algorithm has them."
    )
    scores: list[float] = Field(
        default_factory=list, description="Calibrated probabilities, one per class."
    )
    logits: list[float] = Field(
        default_factory=list, description="Raw logits, one per class, before calibration."
    )
    inference_time: float | None = None
    algorithm: AlgorithmReference
    terminal: bool = True
    timestamp: datetime.datetime


class DetectionResponse(BaseModel):
    source_image_id: str
    bbox: BoundingBox
    inference_time: float | None = None
    algorithm: AlgorithmReference
    timestamp: datetime.datetime
    crop_image_url: str | None = None
    classifications: list[ClassificationResponse] = []


class SourceImageRequest(BaseModel):
    model_config = _LENIENT

    id: str = Field(description="Returned unchanged in the response.", examples=["e124f3b4"])
    # Documented as a URI, validated per image: a malformed URL fails its image, not the request.
    url: str = Field(description="http(s) URL of the image.", json_schema_extra={"format": "uri"})


class SourceImageResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    url: str


class DetectionRequest(BaseModel):
    """A detection Antenna already has: its crop (``crop_image_url``, else ``bbox`` cut from
    the source image) is classified and answered with this ``algorithm``."""

    model_config = _LENIENT

    source_image: SourceImageRequest
    bbox: BoundingBox | None = None
    crop_image_url: str | None = None
    algorithm: AlgorithmReference


class PipelineRequest(BaseModel):
    model_config = _LENIENT

    pipeline: str = Field(description="The pipeline slug, as /info lists it.")
    source_images: list[SourceImageRequest]
    detections: list[DetectionRequest] | None = None
    config: dict[str, Any] | None = Field(
        default=None, description="Pipeline options; none are used, all are accepted."
    )


class PipelineResultsError(BaseModel):
    """Why one image got no detection."""

    error: str
    image_id: str | None = None


class PipelineResultsResponse(BaseModel):
    pipeline: str
    algorithms: dict[str, AlgorithmConfigResponse] = Field(
        default_factory=dict, description="Deprecated on the wire: /info lists the algorithms."
    )
    total_time: float
    source_images: list[SourceImageResponse]
    detections: list[DetectionResponse]
    errors: list[PipelineResultsError] | None = None


class PipelineStageParam(BaseModel):
    name: str
    key: str
    category: str = "default"


class PipelineStage(BaseModel):
    key: str
    name: str
    params: list[PipelineStageParam] = []
    description: str | None = None


class PipelineConfigResponse(BaseModel):
    name: str
    slug: str
    version: int
    description: str | None = None
    algorithms: list[AlgorithmConfigResponse] = []
    stages: list[PipelineStage] = []


class ProcessingServiceInfoResponse(BaseModel):
    name: str
    description: str | None = None
    pipelines: list[PipelineConfigResponse] = []
