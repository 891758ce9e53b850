"""Antenna's wire objects, written here from its ``ami/ml/schemas.py`` (the side that
parses our answers), independent of ``moths_framework.serve``'s own, with unknown
fields forbidden: a field we add or rename is an error, as it would be for Antenna.

Both directions: what we answer (``PipelineResultsResponse``, ``/info``), what
Antenna sends (``PipelineRequest`` with its ``DetectionRequest`` list), and the
async (pull) API's objects: ``PipelineProcessingTask`` (a task we claim),
``PipelineTaskResult`` (what we post back: a results response or a
``PipelineResultsError``) and ``AsyncPipelineRegistrationRequest``.
"""

from __future__ import annotations

import datetime

from pydantic import BaseModel, ConfigDict


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BoundingBox(_Wire):
    x1: float
    y1: float
    x2: float
    y2: float


class AlgorithmReference(_Wire):
    name: str
    key: str


class AlgorithmCategoryMapResponse(_Wire):
    data: list[dict] = []
    labels: list[str] = []
    version: str | None = None
    description: str | None = None
    uri: str | None = None


class AlgorithmConfigResponse(_Wire):
    name: str
    key: str
    description: str | None = None
    task_type: str | None = None
    version: int = 1
    version_name: str | None = None
    uri: str | None = None
    category_map: AlgorithmCategoryMapResponse | None = None


class ClassificationResponse(_Wire):
    classification: str
    labels: list[str] | None = None
    scores: list[float] = []
    logits: list[float] | None = None
    inference_time: float | None = None
    algorithm: AlgorithmReference
    terminal: bool = True
    timestamp: datetime.datetime


class SourceImageResponse(_Wire):
    id: str
    url: str


class DetectionResponse(_Wire):
    source_image_id: str
    bbox: BoundingBox | None = None
    inference_time: float | None = None
    algorithm: AlgorithmReference
    timestamp: datetime.datetime
    crop_image_url: str | None = None
    classifications: list[ClassificationResponse] = []


class PipelineResultsResponse(_Wire):
    pipeline: str
    algorithms: dict[str, AlgorithmConfigResponse] = {}
    total_time: float
    source_images: list[SourceImageResponse]
    detections: list[DetectionResponse]
    errors: list | str | None = None


class SourceImageRequest(_Wire):
    id: str
    url: str


class DetectionRequest(_Wire):
    source_image: SourceImageRequest
    bbox: BoundingBox | None = None
    crop_image_url: str | None = None
    algorithm: AlgorithmReference


class PipelineRequest(_Wire):
    pipeline: str
    source_images: list[SourceImageRequest]
    detections: list[DetectionRequest] | None = None
    config: dict | None = None


class PipelineResultsError(_Wire):
    error: str
    image_id: str | None = None


class PipelineProcessingTask(_Wire):
    id: str
    image_id: str
    image_url: str
    reply_subject: str | None = None


class PipelineTaskResult(_Wire):
    reply_subject: str
    result: PipelineResultsResponse | PipelineResultsError


class PipelineStageParam(_Wire):
    name: str
    key: str
    category: str = "default"


class PipelineStage(_Wire):
    key: str
    name: str
    params: list[PipelineStageParam] = []
    description: str | None = None


class PipelineConfigResponse(_Wire):
    name: str
    slug: str
    version: int
    description: str | None = None
    algorithms: list[AlgorithmConfigResponse] = []
    stages: list[PipelineStage] = []


class ProcessingServiceInfoResponse(_Wire):
    name: str
    description: str | None = None
    pipelines: list[PipelineConfigResponse] = []
    algorithms: list[AlgorithmConfigResponse] = []


class AsyncPipelineRegistrationRequest(_Wire):
    processing_service_name: str
    pipelines: list[PipelineConfigResponse] = []


def parses_unchanged(model: type[BaseModel], data: dict) -> BaseModel:
    """``data`` parses into ``model`` and dumps back to exactly ``data`` (nothing lost or added)."""
    parsed = model.model_validate(data)
    assert parsed.model_dump(mode="json", exclude_unset=True) == data
    return parsed


def antenna_request(
    pipeline: str, images: list[tuple[str, str]], detections: list[dict] | None = None
) -> dict:
    """The shape Antenna posts: ids as strings, the detections it already has (an empty
    list when it has none or does not reprocess them), request_* config keys."""
    return {
        "pipeline": pipeline,
        "source_images": [{"id": image_id, "url": url} for image_id, url in images],
        "detections": detections or [],
        "config": {"request_source_image_batch_size": 8, "example_config_param": 3},
    }


def antenna_detection(
    image: tuple[str, str],
    bbox: tuple[float, float, float, float],
    crop_image_url: str | None = None,
    algorithm: tuple[str, str] = ("Some detector", "some-detector"),
) -> dict:
    """A ``DetectionRequest`` as Antenna sends one (``collect_detections``)."""
    x1, y1, x2, y2 = bbox
    return {
        "source_image": {"id": image[0], "url": image[1]},
        "bbox": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
        "crop_image_url": crop_image_url,
        "algorithm": {"name": algorithm[0], "key": algorithm[1]},
    }
