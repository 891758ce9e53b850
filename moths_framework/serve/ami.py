"""Our models in the AMI platform's terms: pipelines, algorithms, category maps, detections.

Antenna saves the results of a pipeline only when it has exactly one detection
algorithm, so each classify-only pipeline lists a "Whole image" localization
algorithm first (its detection box is the whole image), then one
classification algorithm per rank. Only the species rank is ``terminal``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moths_framework.hierarchy import OTHER
from moths_framework.serve.schemas_ami import (
    AlgorithmCategoryMapResponse,
    AlgorithmConfigResponse,
    PipelineConfigResponse,
)
from moths_framework.serve.served import ServedModel

__all__ = ["WHOLE_IMAGE", "ClassifiedImage", "detections", "pipeline_config", "taxon_rank"]

WHOLE_IMAGE = AlgorithmConfigResponse(
    name="Whole image",
    key="whole-image",
    task_type="localization",
    version=1,
    description="The whole image as one detection: the classifiers see the full frame.",
)
_WHOLE_IMAGE_REFERENCE = {"name": WHOLE_IMAGE.name, "key": WHOLE_IMAGE.key}
TERMINAL_RANK = "species"
# Antenna's TaxonRank names; our other ranks (the seed's "group") are UNKNOWN there.
_ANTENNA_RANKS = frozenset(
    "KINGDOM PHYLUM CLASS ORDER SUPERFAMILY FAMILY SUBFAMILY TRIBE SUBTRIBE GENUS SPECIES".split()
)


@dataclass(frozen=True)
class ClassifiedImage:
    """What the model gave one image.

    Attributes:
        id: the request's id of the image.
        size: (width, height) of the decoded image.
        logits: rank -> this image's raw logits (one row).
        seconds: the model's time for this image (its share of the batch).
    """

    id: str
    size: tuple[int, int]
    logits: Mapping[str, np.ndarray]
    seconds: float


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


def detections(model: ServedModel, images: Sequence[ClassifiedImage]) -> list[dict[str, Any]]:
    """The detections of a request's classified images, as ``DetectionResponse`` JSON objects.

    One per image: its whole frame, with one classification per rank. Scores
    and logits stay float32 numpy arrays for :func:`.json_body.render`; the
    probabilities of all the request's images are computed at once.
    """
    if not images:
        return []
    now = datetime.datetime.now(datetime.timezone.utc)
    ranks = model.classifier.hierarchy.ranks
    logits = {rank: np.stack([image.logits[rank] for image in images]) for rank in ranks}
    probs = model.classifier.probabilities_from_logits(logits)
    per_rank = []
    for rank in ranks:
        classes = model.classifier.hierarchy.classes(rank)
        top = np.argmax(probs[rank], axis=1)
        # float32, the model's precision: shortest text that reads back bit for bit
        scores = probs[rank].astype(np.float32)
        reference = {"name": f"{model.name} ({rank})", "key": algorithm_key(model, rank)}
        per_rank.append((rank, [classes[i] for i in top], scores, logits[rank], reference))
    return [
        {
            "source_image_id": image.id,
            "bbox": {"x1": 0.0, "y1": 0.0, "x2": float(image.size[0]), "y2": float(image.size[1])},
            "inference_time": 0.0,
            "algorithm": _WHOLE_IMAGE_REFERENCE,
            "timestamp": now,
            "crop_image_url": None,
            "classifications": [
                {
                    "classification": names[row],
                    "labels": None,
                    "scores": scores[row],
                    "logits": rank_logits[row],
                    "inference_time": image.seconds,
                    "algorithm": reference,
                    "terminal": rank == TERMINAL_RANK,
                    "timestamp": now,
                }
                for rank, names, scores, rank_logits, reference in per_rank
            ],
        }
        for row, image in enumerate(images)
    ]
