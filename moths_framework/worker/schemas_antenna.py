"""Antenna's job-queue wire objects, as the pull worker reads and writes them.

Field for field after RolnickLab/antenna ``ami/ml/schemas.py``
(``PipelineProcessingTask``, ``PipelineTaskResult``, ``PipelineResultsError``,
``AsyncPipelineRegistrationRequest``) and ``ami/jobs/serializers.py`` (the
bodies of ``/jobs/``, ``/jobs/{id}/tasks/`` and ``/jobs/{id}/result/``). What
we read ignores fields it does not know, so a newer Antenna that adds one
still works; results are the ``/process`` wire objects (:mod:`..serve.schemas_ami`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from moths_framework.serve.schemas_ami import PipelineConfigResponse

__all__ = [
    "AsyncPipelineRegistrationRequest",
    "JobListItem",
    "JobsListResponse",
    "PipelineProcessingTask",
    "TasksResponse",
]

_READ = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class PipelineProcessingTask(BaseModel):
    """One image to process; its result goes back with its ``reply_subject``."""

    model_config = _READ

    id: str
    image_id: str
    image_url: str
    reply_subject: str | None = None


class TasksResponse(BaseModel):
    """``POST /jobs/{id}/tasks/``: the tasks reserved for us (none when the job is done)."""

    model_config = _READ

    tasks: list[PipelineProcessingTask] = []


class JobListItem(BaseModel):
    """``GET /jobs/?ids_only=1``: a job and the pipeline it runs."""

    model_config = ConfigDict(extra="ignore")

    id: int
    pipeline_slug: str | None = None


class JobsListResponse(BaseModel):
    """A page of ``GET /jobs/`` (Django REST framework's limit/offset pagination)."""

    model_config = ConfigDict(extra="ignore")

    results: list[JobListItem] = []


class AsyncPipelineRegistrationRequest(BaseModel):
    """``POST /projects/{id}/pipelines/``: this worker's pipelines, under its service name."""

    processing_service_name: str
    pipelines: list[PipelineConfigResponse] = []
