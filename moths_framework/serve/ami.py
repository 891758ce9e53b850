"""Our models in the AMI platform's terms: pipelines, algorithms, category maps, detections.

Antenna saves the results of a pipeline only when it has exactly one detection
algorithm, so each pipeline lists one localization algorithm first: its
detector, or "Whole image" for a classify-only pipeline (its detection box is
the whole image). Then the moth filter, if it has one (never ``terminal``),
then one classification algorithm per rank. Only the species rank is
``terminal``. A box Antenna sent is answered with its own algorithm.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moths_framework.hierarchy import OTHER
from moths_framework.serve.batching import BatchResult
from moths_framework.serve.schemas_ami import (
    AlgorithmCategoryMapResponse,
    AlgorithmConfigResponse,
    PipelineConfigResponse,
)
from moths_framework.serve.served import ServedModel, slug_of

__all__ = [
    "WHOLE_IMAGE",
    "WHOLE_IMAGE_REFERENCE",
    "Answer",
    "answers",
    "detector_reference",
    "pipeline_config",
    "taxon_rank",
]

WHOLE_IMAGE = AlgorithmConfigResponse(
    name="Whole image",
    key="whole-image",
    task_type="localization",
    version=1,
    description="The whole image as one detection: the classifiers see the full frame.",
)
WHOLE_IMAGE_REFERENCE = {"name": WHOLE_IMAGE.name, "key": WHOLE_IMAGE.key}
TERMINAL_RANK = "species"
# Antenna's TaxonRank names; our other ranks (the seed's "group") are UNKNOWN there.
_ANTENNA_RANKS = frozenset(
    "KINGDOM PHYLUM CLASS ORDER SUPERFAMILY FAMILY SUBFAMILY TRIBE SUBTRIBE GENUS SPECIES".split()
)


@dataclass(frozen=True)
class Answer:
    """One detection to answer: a box and what the filter and the classifier said of it.

    Attributes:
        image_id: the request's id of the source image.
        bbox: ``(x1, y1, x2, y2)`` in the source image's pixels (a request's box as sent).
        algorithm: the reference of the algorithm that found the box.
        seconds: the detector's time for the box's image (0 for a box Antenna sent).
        crop_image_url: the crop's URL, when Antenna sent one.
        filter: the filter's result for the crop (``None``: no filter).
        moth: whether the filter let the box pass on (always, without a filter).
        result: the classifier's result (``None`` for a box the filter stopped).
    """

    image_id: str
    bbox: tuple[float, float, float, float]
    algorithm: Mapping[str, str]
    seconds: float = 0.0
    crop_image_url: str | None = None
    filter: BatchResult | None = None
    moth: bool = True
    result: BatchResult | None = None


def taxon_rank(rank: str, label: str) -> str:
    """Antenna's ``taxon_rank`` of a class: the rank's name if Antenna knows it, else UNKNOWN."""
    if label == OTHER or rank.upper() not in _ANTENNA_RANKS:
        return "UNKNOWN"
    return rank.upper()


def algorithm_key(model: ServedModel, rank: str) -> str:
    return f"{model.slug}-{rank}"


def _uri(source: str) -> str | None:
    return source if source.startswith("zoo:") else None


def category_map(model: ServedModel, rank: str) -> AlgorithmCategoryMapResponse:
    labels = model.classifier.hierarchy.classes(rank)
    return AlgorithmCategoryMapResponse(
        data=[
            {"index": i, "label": label, "taxon_rank": taxon_rank(rank, label)}
            for i, label in enumerate(labels)
        ],
        labels=list(labels),
        version=model.version_name,
        description=f"{rank} classes of {model.model_name}; index 0 ({OTHER}) is any other species",
        uri=_uri(model.source),
    )


def classification_algorithm(model: ServedModel, rank: str) -> AlgorithmConfigResponse:
    return AlgorithmConfigResponse(
        name=f"{model.model_name} ({rank})",
        key=algorithm_key(model, rank),
        description=f"{rank} head of {model.model_name}; scores are calibrated probabilities",
        task_type="classification",
        version=model.classifier_version,
        version_name=model.version_name,
        uri=_uri(model.source),
        category_map=category_map(model, rank),
    )


def detector_reference(model: ServedModel) -> dict[str, str]:
    """The ``AlgorithmReference`` of the pipeline's localization: detector or whole image."""
    if model.detector is None:
        return WHOLE_IMAGE_REFERENCE
    return {"name": _stage_name(model, "detector"), "key": f"{model.slug}-detector"}


def _stage_name(model: ServedModel, role: str) -> str:
    stage = model.detector if role == "detector" else model.filter
    card = stage.model.metadata.model_card
    return f"{card.get('name') or slug_of(stage.source)} ({role})"


def detector_algorithm(model: ServedModel) -> AlgorithmConfigResponse:
    detector = model.detector
    spec = model.stages.spec.detector
    score = detector.model.min_score
    return AlgorithmConfigResponse(
        **detector_reference(model),
        description=f"Finds the moths on a frame ({', '.join(detector.model.classes)}); boxes "
        f"scoring {score:g} or more, at most {detector.model.max_detections}, each cut with "
        f"{spec.crop_margin} px around it",
        task_type="localization",
        version=detector.version,
        version_name=detector.version_name,
        uri=_uri(detector.source),
    )


def filter_reference(model: ServedModel) -> dict[str, str]:
    return {"name": _stage_name(model, "filter"), "key": f"{model.slug}-filter"}


def filter_algorithm(model: ServedModel) -> AlgorithmConfigResponse:
    stage, spec = model.filter, model.stages.spec.filter
    rank = stage.model.hierarchy.ranks[0]
    labels = stage.model.hierarchy.classes(rank)
    return AlgorithmConfigResponse(
        **filter_reference(model),
        description=f"Moth filter: a box goes on to the species classifier when "
        f"{spec.positive!r} has probability {spec.threshold:g} or more; any other box is "
        "answered with this classification only",
        task_type="classification",
        version=stage.version,
        version_name=stage.version_name,
        uri=_uri(stage.source),
        category_map=AlgorithmCategoryMapResponse(
            data=[{"index": i, "label": label, "taxon_rank": "UNKNOWN"} for i, label in
                  enumerate(labels)],
            labels=list(labels),
            version=stage.version_name,
            description=f"{rank} classes of the moth filter",
            uri=_uri(stage.source),
        ),
    )  # fmt: skip


def pipeline_config(model: ServedModel) -> PipelineConfigResponse:
    """The ``/info`` entry of one pipeline: its localization (detector or whole image), its
    filter, then a classifier per rank."""
    ranks = model.classifier.hierarchy.ranks
    algorithms = [WHOLE_IMAGE if model.detector is None else detector_algorithm(model)]
    if model.filter is not None:
        algorithms.append(filter_algorithm(model))
    return PipelineConfigResponse(
        name=model.name,
        slug=model.slug,
        version=model.version,
        description=model.description,
        stages=[],
        algorithms=[*algorithms, *(classification_algorithm(model, r) for r in ranks)],
    )


def answers(model: ServedModel, boxes: Sequence[Answer]) -> list[dict[str, Any]]:
    """``DetectionResponse`` JSON objects, one per box, with one classification per rank
    (after the filter's, with a filter); a box the filter stopped has the filter's only.

    Scores and logits stay float32 numpy arrays for :func:`.json_body.render`; the
    probabilities of all the request's boxes are computed at once, per model.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    said: dict[int, list[dict[str, Any]]] = {id(box): [] for box in boxes}
    filtered = [box for box in boxes if box.filter is not None]
    for box, one in zip(filtered, _filter_classifications(model, filtered, now), strict=True):
        said[id(box)].append(one)
    classified = [box for box in boxes if box.result is not None]
    for box, ranks in zip(classified, _rank_classifications(model, classified, now), strict=True):
        said[id(box)] += ranks
    return [
        {
            "source_image_id": box.image_id,
            "bbox": dict(zip(("x1", "y1", "x2", "y2"), box.bbox, strict=True)),
            "inference_time": box.seconds,
            "algorithm": dict(box.algorithm),
            "timestamp": now,
            "crop_image_url": box.crop_image_url,
            "classifications": said[id(box)],
        }
        for box in boxes
    ]


def _classification(
    name: str, scores: np.ndarray, logits: np.ndarray, seconds: float,
    reference: Mapping[str, str], terminal: bool, now: datetime.datetime,
) -> dict[str, Any]:  # fmt: skip
    return {
        "classification": name,
        "labels": None,
        "scores": scores,
        "logits": logits,
        "inference_time": seconds,
        "algorithm": reference,
        "terminal": terminal,
        "timestamp": now,
    }


def _rank_classifications(
    model: ServedModel, boxes: Sequence[Answer], now: datetime.datetime
) -> list[list[dict[str, Any]]]:
    """Each box's classifications, one per rank (only species is ``terminal``)."""
    if not boxes:
        return []
    hierarchy = model.classifier.hierarchy
    logits = {r: np.stack([box.result.logits[r] for box in boxes]) for r in hierarchy.ranks}
    probs = model.classifier.probabilities_from_logits(logits)
    out: list[list[dict[str, Any]]] = [[] for _ in boxes]
    for rank in hierarchy.ranks:
        classes = hierarchy.classes(rank)
        top = np.argmax(probs[rank], axis=1)
        # float32, the model's precision: shortest text that reads back bit for bit
        scores = probs[rank].astype(np.float32)
        reference = {"name": f"{model.model_name} ({rank})", "key": algorithm_key(model, rank)}
        for row, box in enumerate(boxes):
            out[row].append(
                _classification(
                    classes[top[row]],
                    scores[row],
                    logits[rank][row],
                    box.result.seconds_per_image,
                    reference,
                    rank == TERMINAL_RANK,
                    now,
                )  # fmt: skip
            )
    return out


def _filter_classifications(
    model: ServedModel, boxes: Sequence[Answer], now: datetime.datetime
) -> list[dict[str, Any]]:
    """Each box's filter classification (never ``terminal``): the positive class for a box
    that passed, else the likeliest other class."""
    if not boxes:
        return []
    stage = model.filter.model
    rank = stage.hierarchy.ranks[0]
    classes = stage.hierarchy.classes(rank)
    logits = np.stack([box.filter.logits[rank] for box in boxes])
    scores = stage.probabilities_from_logits({rank: logits})[rank].astype(np.float32)
    positive = model.stages.filter_index()
    others = scores.copy()
    others[:, positive] = -1.0
    reference = filter_reference(model)
    return [
        _classification(
            classes[positive] if box.moth else classes[int(np.argmax(others[row]))],
            scores[row],
            logits[row],
            box.filter.seconds_per_image,
            reference,
            False,
            now,
        )  # fmt: skip
        for row, box in enumerate(boxes)
    ]
