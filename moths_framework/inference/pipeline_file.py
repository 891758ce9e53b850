"""Pipeline files: a detector, a moth/non-moth filter and a classifier named in one YAML file.

``moths-serve --pipeline`` serves one as an AMI pipeline and ``moths-infer
--pipeline`` runs it over trap frames; both read it here. A pipeline::

    name: NL moths (demo)            # optional; default: the classifier's name
    slug: nl-moths-demo              # optional; default: the file's name
    description: ...                 # optional
    version: 3                       # optional; default: from the files' hashes
    detector:                        # optional; absent: the whole image is the one box
      model: zoo:nl-moths-demo-detector
      min_score: 0.5                 # optional; default: the detector's own
      max_detections: 100            # optional; default: the detector's own
      crop_margin: 0                 # pixels around each box before it is cut
    filter:                          # optional; a moth/non-moth classifier
      model: filters/moth-filter.onnx
      positive: moth                 # the class that passes on to the classifier
      threshold: 0.5                 # probability of `positive` needed to pass
    classifier:
      model: zoo:nl-moths-demo
      thresholds: {species: 0.6}     # optional; the roll-up's, per rank

A stage may be just its model (``detector: zoo:ID``). A relative model path is
relative to the pipeline file. Every mistake is a :class:`PipelineFileError` of
one line naming the file and the field. Nothing is loaded here:
:func:`~.pipeline_models.load_pipeline` opens the models. No torch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ClassifierStage",
    "DetectorStage",
    "FilterStage",
    "PipelineFileError",
    "PipelineSpec",
    "read_pipeline_file",
    "slug_of",
]

_SLUG = r"^[a-z0-9]+(-[a-z0-9]+)*$"
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_MODEL = {"type": "string", "minLength": 1}
_STAGES = ("detector", "filter", "classifier")


def _stage(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["model"],
        "additionalProperties": False,
        "properties": {"model": _MODEL, **properties},
    }


SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["classifier"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "slug": {"type": "string", "pattern": _SLUG},
        "description": {"type": "string"},
        "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "detector": _stage(
            {
                "min_score": _PROBABILITY,
                "max_detections": {"type": "integer", "minimum": 1},
                "crop_margin": {"type": "integer", "minimum": 0},
            }
        ),
        "filter": _stage(
            {"positive": {"type": "string", "minLength": 1}, "threshold": _PROBABILITY}
        ),
        "classifier": _stage(
            {"thresholds": {"type": "object", "additionalProperties": _PROBABILITY}}
        ),
    },
}


class PipelineFileError(ValueError):
    """A pipeline file that cannot be read or does not follow the schema (one line)."""


@dataclass(frozen=True)
class DetectorStage:
    """The detector: its file or ``zoo:ID``; ``None`` options are the detector's own."""

    model: str
    min_score: float | None = None
    max_detections: int | None = None
    crop_margin: int = 0


@dataclass(frozen=True)
class FilterStage:
    """The moth/non-moth classifier: a box passes on when ``positive`` has at least
    ``threshold`` probability (on the model's first rank)."""

    model: str
    positive: str = "moth"
    threshold: float = 0.5


@dataclass(frozen=True)
class ClassifierStage:
    """The species classifier and its roll-up thresholds (rank -> probability)."""

    model: str
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline file, read and checked; model paths made absolute (``zoo:`` kept)."""

    path: str
    slug: str
    classifier: ClassifierStage
    detector: DetectorStage | None = None
    filter: FilterStage | None = None
    name: str | None = None
    description: str | None = None
    version: int | None = None


def slug_of(source: str) -> str:
    """A pipeline slug from a file path or ``zoo:ID[@VERSION]``: lowercase, ``[a-z0-9-]``.

    A zoo model's version is left out: the pipeline keeps its slug across versions.
    """
    name = source[4:].split("@")[0] if source.startswith("zoo:") else Path(source).stem
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "model"


def read_pipeline_file(path: str | os.PathLike) -> PipelineSpec:
    """Read and check a pipeline file (nothing is loaded yet).

    Raises:
        PipelineFileError: unreadable, not YAML, or not a pipeline (one line: the
            file, the field and what is wrong).
    """
    data = _checked(Path(path), _yaml(Path(path)))
    folder = Path(path).resolve().parent

    def model(stage: dict[str, Any]) -> str:
        given = stage["model"]
        return given if given.startswith("zoo:") else os.fspath(folder / Path(given).expanduser())

    detector, filter_, classifier = data.get("detector"), data.get("filter"), data["classifier"]
    return PipelineSpec(
        path=os.fspath(path),
        slug=data.get("slug") or slug_of(os.fspath(path)),
        classifier=ClassifierStage(model(classifier), dict(classifier.get("thresholds", {}))),
        detector=DetectorStage(
            model(detector),
            detector.get("min_score"),
            detector.get("max_detections"),
            detector.get("crop_margin", 0),
        )
        if detector
        else None,  # fmt: skip
        filter=FilterStage(
            model(filter_), filter_.get("positive", "moth"), filter_.get("threshold", 0.5)
        )
        if filter_
        else None,  # fmt: skip
        name=data.get("name"),
        description=data.get("description"),
        version=data.get("version"),
    )


def _yaml(path: Path) -> Any:
    try:
        import yaml
    except ImportError:
        raise PipelineFileError(
            f"{path}: reading pipeline files needs PyYAML: pip install 'moths-framework[infer]'"
        ) from None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PipelineFileError(f"{path}: cannot read: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PipelineFileError(f"{path}: not YAML{line}: {problem}") from None


def _checked(path: Path, data: Any) -> dict[str, Any]:
    import jsonschema

    if isinstance(data, dict):  # a stage may be just its model
        data = {
            k: {"model": v} if k in _STAGES and isinstance(v, str) else v for k, v in data.items()
        }
    errors = sorted(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(data),
        key=lambda e: (list(e.absolute_path), e.message),
    )
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "top level"
        raise PipelineFileError(f"{path}: {where}: {_message(error)}")
    return data


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        return f"{error.message}; the fields are {allowed}"
    if error.validator == "required" and error.instance is not None and not error.path:
        return "a pipeline needs a classifier: {model: PATH|zoo:ID}"
    if error.validator == "type" and error.schema.get("type") == "object" and error.path:
        return f"{error.message}: give {{model: PATH|zoo:ID, ...}} or just the model"
    return error.message
