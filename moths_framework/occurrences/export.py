"""What goes into a Darwin Core Archive: the records, the coverage and the methods.

The occurrences come from ``occurrences.csv``; the models and settings from the
run.json chain behind it (occurrences.csv's record, tracks.csv's inside it,
detections.csv's inside that). ``Other``, non-moth and unanswered occurrences are
left out unless ``include_other`` (then ``Other`` and unanswered ones are kept as the
order Lepidoptera; a non-moth is never a moth occurrence). No torch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moths_framework.nights.deployments import Deployments
from moths_framework.occurrences.counts import Occurrence
from moths_framework.occurrences.darwin_core import (
    Identification,
    darwin_core_record,
)
from moths_framework.occurrences.dataset import DatasetInfo
from moths_framework.occurrences.eml import Coverage
from moths_framework.occurrences.taxa import NON_MOTH, TAXON, kind_of, kinds_in_words
from moths_framework.provenance import models_in, runs_in

__all__ = ["DarwinCoreExport", "prepare_export"]


@dataclass
class DarwinCoreExport:
    """The records of ``occurrence.txt``, the EML's coverage and methods, and what was
    left out (individuals per kind: ``other``, ``non-moth``, ``unidentified``)."""

    records: list[dict[str, str]]
    coverage: Coverage
    methods: list[str]
    identification: Identification
    left_out: Counter[str] = field(default_factory=Counter)


def prepare_export(
    occurrences: Sequence[Occurrence],
    deployments: Deployments,
    dataset: DatasetInfo,
    provenance: Mapping[str, Any] | None,
    include_other: bool = False,
) -> DarwinCoreExport:
    """The archive's content for ``occurrences`` (see the module).

    Raises:
        ValueError: ``deployments`` lists none of a deployment of ``occurrences``.
    """
    listed = {row.id for row in deployments.rows or []}
    unlisted = sorted({o.deployment for o in occurrences} - listed)
    if unlisted:
        raise ValueError(
            f"deployment {unlisted[0]!r} of occurrences.csv is not in the deployments table "
            "(its place is needed for each record); add a row for it"
        )
    identification = _identification(provenance)
    kept, left_out = [], Counter()
    for occurrence in occurrences:
        kind = kind_of(occurrence.taxon)
        if kind == TAXON or (include_other and kind != NON_MOTH):
            kept.append(occurrence)
        else:
            left_out[kind] += occurrence.individuals
    records = [
        darwin_core_record(o, deployments.get(o.deployment), identification, dataset) for o in kept
    ]
    return DarwinCoreExport(
        records=records,
        coverage=_coverage(kept or occurrences, deployments),
        methods=_methods(provenance, left_out, include_other),
        identification=identification,
        left_out=left_out,
    )


def _identification(provenance: Mapping[str, Any] | None) -> Identification:
    classifiers = [m for m in models_in(provenance) if m.get("role") == "classifier"]
    dates = [
        str(run.get("finished", ""))
        for run in runs_in(provenance)
        if any(m.get("role") == "classifier" for m in run.get("models") or [])
    ]
    return Identification(classifiers, dates[0] if dates else "")


def _coverage(occurrences: Sequence[Occurrence], deployments: Deployments) -> Coverage:
    used = sorted({o.deployment for o in occurrences})
    points = []
    for name in used:
        place = deployments.get(name)
        if place.latitude is not None and place.longitude is not None:
            points.append((place.latitude, place.longitude))
    nights = sorted(o.night for o in occurrences) or [""]
    taxa = sorted({(o.taxon_rank, o.taxon) for o in occurrences if kind_of(o.taxon) == TAXON})
    return Coverage(points, nights[0], nights[-1], used, taxa)


def _methods(
    provenance: Mapping[str, Any] | None, left_out: Counter[str], include_other: bool
) -> list[str]:
    runs = list(runs_in(provenance))
    steps = [
        "Automated light-trap cameras photographed the lit sheet through each night; frames "
        "were grouped by deployment and by night (noon to noon, local time)."
    ]
    steps += [_run_words(run) for run in reversed(runs)]  # the first step first
    steps.append(
        "moths-track linked each night's detections across consecutive frames into tracks "
        "(appearance, overlap, size and distance); a track is one individual and answers with "
        "the confidence-weighted vote of its detections. individualCount is the number of tracks "
        "of a taxon at a deployment in a night. Identifications are by machine, unverified."
    )
    if sum(left_out.values()):
        words = kinds_in_words(left_out)
        hint = "" if include_other else " (--include-other keeps Other and unanswered ones)"
        steps.append(f"Individuals left out of this archive: {words}{hint}.")
    if not runs:
        steps.append("No run.json was found beside occurrences.csv: the models are not named.")
    steps.append("run.json in this archive holds the full provenance of every step.")
    return steps


def _run_words(run: Mapping[str, Any]) -> str:
    """``moths-infer (moths-framework 0.1.0, run <id>, <start> to <end>) with the
    classifier ...; settings {...}.``"""
    version = (run.get("software") or {}).get("moths-framework", "?")
    models = ", ".join(_model_words(m) for m in run.get("models") or [])
    settings = run.get("settings")
    return (
        f"{run.get('command', '?')} (moths-framework {version}, run {run.get('run_id', '?')}, "
        f"{run.get('started', '?')} to {run.get('finished', '?')})"
        + (f" with {models}" if models else "")
        + (f"; settings {json.dumps(settings, sort_keys=True, default=str)}" if settings else "")
        + "."
    )


def _model_words(model: Mapping[str, Any]) -> str:
    name = " ".join(str(p) for p in (model.get("name"), model.get("version")) if p)
    return f"the {model.get('role', 'model')} {name} (sha256 {model.get('sha256')})"
