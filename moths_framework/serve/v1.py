"""The ``/v1`` API's logic: per-request options, and results as ``moths-infer`` writes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import lru_cache

from moths_framework.inference import OnnxClassifier, Prediction
from moths_framework.inference.writers import prediction_json
from moths_framework.serve.engine import ImageOutcome
from moths_framework.serve.schemas_v1 import ClassifyResult, ModelInfo
from moths_framework.serve.served import ServedModel

__all__ = ["classify_results", "model_info", "with_options"]

_VIEWS = 64  # distinct (thresholds, species list) combinations kept


def with_options(
    model: ServedModel,
    thresholds: Mapping[str, float] | None,
    species_list: Sequence[str] | None,
) -> OnnxClassifier:
    """The model's classifier, or a view of it with other thresholds or a species list.

    A view shares the ONNX Runtime session (the model runs once, in the batcher);
    only the probabilities and roll-up differ.

    Raises:
        ValueError: an unknown rank or species, or a threshold outside [0, 1].
    """
    if not thresholds and not species_list:
        return model.classifier
    merged = {**model.classifier.thresholds, **(thresholds or {})}
    species = tuple(species_list) if species_list else None
    return _view(model.classifier, tuple(sorted(merged.items())), species)


@lru_cache(maxsize=_VIEWS)
def _view(
    base: OnnxClassifier, thresholds: tuple[tuple[str, float], ...], species: tuple[str, ...] | None
) -> OnnxClassifier:
    return OnnxClassifier(
        base.session, base.source, thresholds=dict(thresholds), species_list=species
    )


def classify_results(
    classifier: OnnxClassifier,
    outcomes: Sequence[ImageOutcome],
    top_k: int,
    features: bool = False,
) -> list[ClassifyResult]:
    """One JSON Lines record of ``moths-infer`` per outcome, with the image's ``id``
    (with ``novelty_score`` and ``novel`` when the model has a novelty detector, and
    with ``features``, the image's feature vector, when asked for)."""
    ranks = classifier.hierarchy.ranks
    novelty = classifier.novelty is not None
    results = []
    for outcome in outcomes:
        image = outcome.image
        source = image.url or image.name or image.id
        result = outcome.result
        if outcome.error is not None or result is None:
            prediction = Prediction(source, error=outcome.error or "not classified")
        else:
            rows = {rank: row[None] for rank, row in result.logits.items()}
            probs = classifier.probabilities_from_logits(rows)
            first = {rank: p[0] for rank, p in probs.items()}
            score = None
            if novelty and result.features is not None:
                score = float(classifier.novelty_scores(result.features[None])[0])
            prediction = classifier.prediction_from_probabilities(source, first, top_k, score)
        record = prediction_json(prediction, ranks, novelty)
        if features:
            vector = None if result is None or outcome.error else result.features
            record["features"] = None if vector is None else [float(v) for v in vector]
        results.append(ClassifyResult(id=image.id, **record))
    return results


def model_info(model: ServedModel) -> ModelInfo:
    classifier = model.classifier
    hierarchy = classifier.hierarchy
    metadata = classifier.metadata
    return ModelInfo(
        slug=model.slug,
        name=model.name,
        source=model.source,
        sha256=model.sha256,
        provider=classifier.provider,
        card=metadata.model_card,
        ranks=list(hierarchy.ranks),
        classes={rank: list(hierarchy.classes(rank)) for rank in hierarchy.ranks},
        thresholds=classifier.thresholds,
        calibration=_calibration(classifier),
        preprocessing=dataclasses.asdict(metadata.preprocessing),
    )


def _calibration(classifier: OnnxClassifier) -> dict:
    """Temperatures, and what ``moths-calibrate`` chose when it ran: roll-up and novelty."""
    result: dict = {"temperature": dict(classifier.metadata.temperature)}
    if classifier.rollup is not None:
        result["rollup"] = classifier.rollup
    if classifier.novelty is not None:
        novelty = classifier.novelty
        result["novelty"] = {"method": novelty.method, "threshold": novelty.threshold}
    return result
