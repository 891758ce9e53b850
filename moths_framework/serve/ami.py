"""Our models in the AMI platform's terms: pipelines, algorithms, category maps, detections.

Antenna saves the results of a pipeline only when it has exactly one detection
algorithm, so each classify-only pipeline lists a "Whole image" localization
algorithm first (its detection box is the whole image), then one
classification algorithm per rank. Only the species rank is ``terminal``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import numpy as np

from moths_framework.hierarchy import OTHER
from moths_framework.serve.schemas_ami import (
    AlgorithmCategoryMapResponse,
    AlgorithmConfigResponse,
    AlgorithmReference,
    BoundingBox,
    ClassificationResponse,
    DetectionResponse,
    PipelineConfigResponse,
)
from moths_framework.serve.served import ServedModel

__all__ = ["WHOLE_IMAGE", "detection", "pipeline_config", "taxon_rank"]

WHOLE_IMAGE = AlgorithmConfigResponse(
    name="Whole image",
    key="whole-image",
    task_type="localization",
    version=1,
    description="The whole image as one detection: the classifiers see the full frame.",
)
TERMINAL_RANK = "species"
# Antenna's TaxonRank names; our other ranks (the seed's "group") are UNKNOWN there.
_ANTENNA_RANKS = frozenset(
    "KINGDOM PHYLUM CLASS ORDER SUPERFAMILY FAMILY SUBFAMILY TRIBE SUBTRIBE GENUS SPECIES".split()
)


def taxon_rank(rank: str, label: str) -> str:
    """Antenna's ``taxon_rank`` of a class: the rank's name if Antenna knows it, else UNKNOWN."""
    if label == OTHER or rank.upper() not in _ANTENNA_RANKS:
        return "UNKNOWN"
    return rank.upper()


def algorithm_key(model: ServedModel, rank: str) -> str:
    return f"{model.slug}-{rank}"


def category_map(model: ServedModel, rank: str) -> AlgorithmCategoryMapResponse:
    labels = model.classifier.hierarchy.classes(rank)
    return AlgorithmCategoryMapResponse(
        data=[
            {"index": i, "label": label, "taxon_rank": taxon_rank(rank, label)}
            for i, label in enumerate(labels)
        ],
        labels=list(labels),
        version=model.version_name,
        description=f"{rank} classes of {model.name}; index 0 ({OTHER}) is any other species",
        uri=model.source if model.source.startswith("zoo:") else None,
    )


def classification_algorithm(model: ServedModel, rank: str) -> AlgorithmConfigResponse:
    return AlgorithmConfigResponse(
        name=f"{model.name} ({rank})",
        key=algorithm_key(model, rank),
        description=f"{rank} head of {model.name}; scores are calibrated probabilities",
        task_type="classification",
        version=model.version,
        version_name=model.version_name,
        uri=model.source if model.source.startswith("zoo:") else None,
        category_map=category_map(model, rank),
    )


def pipeline_config(model: ServedModel) -> PipelineConfigResponse:
    """The ``/info`` entry of one model: whole-image localization, then a classifier per rank."""
    ranks = model.classifier.hierarchy.ranks
    return PipelineConfigResponse(
        name=model.name,
        slug=model.slug,
        version=model.version,
        description=model.description,
        stages=[],
        algorithms=[WHOLE_IMAGE, *(classification_algorithm(model, r) for r in ranks)],
    )


def detection(
    model: ServedModel,
    image_id: str,
    size: tuple[int, int],
    logits: Mapping[str, np.ndarray],
    seconds_per_image: float,
) -> DetectionResponse:
    """The one detection of an image: its whole frame, with one classification per rank.

    Args:
        logits: rank -> this image's raw logits (one row).
        size: (width, height) of the decoded image.
        seconds_per_image: the model's time for this image (its share of the batch).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    rows = {rank: row[np.newaxis] for rank, row in logits.items()}
    probs = model.classifier.probabilities_from_logits(rows)
    classifications = []
    for rank, row in logits.items():
        scores = probs[rank][0]
        classifications.append(
            ClassificationResponse(
                classification=model.classifier.hierarchy.classes(rank)[int(np.argmax(scores))],
                labels=None,
                scores=scores.tolist(),
                logits=row.astype(float).tolist(),
                inference_time=seconds_per_image,
                algorithm=_reference(model.name, rank, algorithm_key(model, rank)),
                terminal=rank == TERMINAL_RANK,
                timestamp=now,
            )
        )
    width, height = size
    return DetectionResponse(
        source_image_id=image_id,
        bbox=BoundingBox(x1=0, y1=0, x2=width, y2=height),
        inference_time=0.0,
        algorithm=AlgorithmReference(name=WHOLE_IMAGE.name, key=WHOLE_IMAGE.key),
        timestamp=now,
        crop_image_url=None,
        classifications=classifications,
    )


def _reference(model_name: str, rank: str, key: str) -> AlgorithmReference:
    return AlgorithmReference(name=f"{model_name} ({rank})", key=key)
