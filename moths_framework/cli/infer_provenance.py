"""``moths-infer``'s ``run.json``: the models it ran and the settings that shaped each answer.

What a record holds is :mod:`moths_framework.provenance`'s; this module only says
which of moths-infer's options and models go in. Imports no torch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from moths_framework.inference import OnnxClassifier, OnnxDetector
from moths_framework.inference.pipeline import MothFilter
from moths_framework.inference.species_list import read_species_list
from moths_framework.provenance import Run, file_sha256

__all__ = ["record_infer_run"]


def record_infer_run(
    run: Run,
    opts: argparse.Namespace,
    images: int,
    classifier: OnnxClassifier | None,
    detector: OnnxDetector | None = None,
    crop_margin: int | None = None,
    moth_filter: MothFilter | None = None,
) -> Path:
    """Write ``run``'s record beside ``opts.output`` (and beside ``--features``' file): the
    models, settings and input count (and the pipeline file, with ``--pipeline``: among the
    inputs, and its path, sha256 and content under ``settings["pipeline"]``). Returns the
    output's record's path."""
    settings: dict[str, Any] = {"images": images, "top_k": opts.top_k}
    # Images: the classifier's decode (on by default); frames: the detector's (opt-in).
    fast = classifier.fast_decode if detector is None and classifier is not None else None
    settings["fast_decode"] = bool(opts.fast_decode) if fast is None else fast
    if getattr(opts, "pipeline", None) is not None:
        run.add_input(opts.pipeline)
        settings["pipeline"] = _pipeline_file(opts.pipeline)
    if moth_filter is not None:
        model = moth_filter.model
        run.add_model("filter", model.source, card=model.metadata.model_card)
        settings["filter"] = {"positive": moth_filter.positive, "threshold": moth_filter.threshold}
    if detector is not None:
        run.add_model(
            "detector",
            detector.source,
            given=opts.detector,
            card=detector.metadata.model_card,
            precision=detector.metadata.precision,
            classes=list(detector.metadata.classes),
        )
        settings["detector"] = {
            "provider": detector.provider,
            "min_score": detector.min_score,
            "max_detections": detector.max_detections,
            "crop_margin": crop_margin or 0,
        }
    if classifier is not None:
        run.add_model(
            "classifier",
            classifier.source,
            given=opts.model,
            card=classifier.metadata.model_card,
            precision=classifier.metadata.precision,
            ranks=list(classifier.hierarchy.ranks),
        )
        settings["classifier"] = _classifier_settings(classifier, opts)
    run.settings |= settings
    if getattr(opts, "features", None) is not None:
        run.write(opts.features)
    return run.write(opts.output)


def _pipeline_file(path: str) -> dict[str, Any]:
    """The pipeline file as it was read: its path, sha256 and parsed content (one read,
    so the content is the one hashed)."""
    import yaml  # the file was read with it already (the infer extra)

    data = Path(path).read_bytes()
    return {
        "file": os.fspath(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content": yaml.safe_load(data.decode("utf-8")),
    }


def _classifier_settings(classifier: OnnxClassifier, opts: argparse.Namespace) -> dict[str, Any]:
    species_list = None
    if opts.species_list is not None:
        species_list = {
            "file": opts.species_list,
            "sha256": file_sha256(opts.species_list),
            "species": read_species_list(opts.species_list),
        }
    return {
        "provider": classifier.provider,
        "thresholds": dict(classifier.thresholds),
        "rollup": classifier.rollup or "heads",
        "species_list": species_list,
        "mask_mode": classifier.mask_mode if species_list else None,
        "novelty": classifier.novelty is not None,
    }
