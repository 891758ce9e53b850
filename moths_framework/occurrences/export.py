"""What goes into a Darwin Core Archive: the records, the coverage and the methods.

The occurrences come from ``occurrences.csv``; the models and settings from the
run.json chain behind it (occurrences.csv's record, tracks.csv's inside it,
detections.csv's inside that). ``Other``, non-moth and unanswered occurrences are
left out unless ``include_other`` (then ``Other`` and unanswered ones are kept as the
order Lepidoptera; a non-moth is never a moth occurrence). With the nights sampled
(``nights.csv``) the archive is a sampling-event one: an event per deployment and per
night, nights without an occurrence included, the occurrences an extension. No torch.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moths_framework.nights.deployments import Deployments
from moths_framework.nights.sampled_nights import SampledNight
from moths_framework.occurrences.archive import (
    EVENT_ROW_TYPE,
    OCCURRENCE_ROW_TYPE,
    DataFile,
)
from moths_framework.occurrences.counts import Occurrence
from moths_framework.occurrences.darwin_core import (
    TERMS,
    Identification,
    darwin_core_record,
    taxon_rank,
)
from moths_framework.occurrences.dataset import DatasetInfo
from moths_framework.occurrences.eml import Coverage
from moths_framework.occurrences.events import (
    EVENT_TERMS,
    event_records,
    individuals_by_event,
)
from moths_framework.occurrences.taxa import NON_MOTH, TAXON, kind_of, kinds_in_words
from moths_framework.provenance import models_in, runs_in

__all__ = ["DarwinCoreExport", "prepare_export"]


@dataclass
class DarwinCoreExport:
    """The records of ``occurrence.txt`` (and of ``event.txt``: ``events``, empty for an
    occurrence-core archive), the EML's coverage and methods, and what was left out
    (individuals per kind: ``other``, ``non-moth``, ``unidentified``)."""

    records: list[dict[str, str]]
    coverage: Coverage
    methods: list[str]
    identification: Identification
    left_out: Counter[str] = field(default_factory=Counter)
    events: list[dict[str, str]] = field(default_factory=list)
    nights: int = 0  # nights sampled (event core)

    @property
    def event_core(self) -> bool:
        """Whether the archive is a sampling-event one."""
        return bool(self.events)

    def data_files(self) -> tuple[DataFile, list[DataFile]]:
        """The archive's core and extensions: ``occurrence.txt`` alone, or ``event.txt``
        with ``occurrence.txt`` (``eventID`` first, its link to the core)."""
        if not self.event_core:
            return DataFile("occurrence.txt", OCCURRENCE_ROW_TYPE, TERMS, self.records,
                            "occurrenceID"), []  # fmt: skip
        linked = ("eventID", *(term for term in TERMS if term != "eventID"))
        return DataFile("event.txt", EVENT_ROW_TYPE, EVENT_TERMS, self.events, "eventID"), [
            DataFile("occurrence.txt", OCCURRENCE_ROW_TYPE, linked, self.records, "eventID")
        ]


def prepare_export(
    occurrences: Sequence[Occurrence],
    deployments: Deployments,
    dataset: DatasetInfo,
    provenance: Mapping[str, Any] | None,
    include_other: bool = False,
    nights: Sequence[SampledNight] | None = None,
) -> DarwinCoreExport:
    """The archive's content for ``occurrences`` (see the module); ``nights``: the nights
    sampled, for a sampling-event archive (``None``: occurrence core).

    Raises:
        ValueError: ``deployments`` lists none of a deployment of ``occurrences`` (or of
            ``nights``), or ``nights`` lacks a night of ``occurrences``.
    """
    listed = {row.id for row in deployments.rows or []}
    for what, rows in (("occurrences.csv", occurrences), ("nights.csv", nights or [])):
        unlisted = sorted({row.deployment for row in rows} - listed)
        if unlisted:
            raise ValueError(
                f"deployment {unlisted[0]!r} of {what} is not in the deployments table "
                "(its place is needed for each record); add a row for it"
            )
    if nights is not None:
        _check_nights(occurrences, nights)
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
    events = []
    if nights is not None:
        events = event_records(nights, deployments, dataset, individuals_by_event(records))
    return DarwinCoreExport(
        records=records,
        coverage=_coverage(kept or occurrences, deployments, nights),
        methods=_methods(provenance, left_out, include_other, nights, records),
        identification=identification,
        left_out=left_out,
        events=events,
        nights=len(nights or []),
    )


def _check_nights(occurrences: Sequence[Occurrence], nights: Sequence[SampledNight]) -> None:
    sampled = {(n.deployment, n.night) for n in nights}
    missing = sorted({(o.deployment, o.night) for o in occurrences} - sampled)
    if missing:
        deployment, night = missing[0]
        raise ValueError(
            f"night {night} of {deployment!r} has occurrences but is not in nights.csv: "
            "give the nights.csv moths-track wrote beside these tracks"
        )


def _identification(provenance: Mapping[str, Any] | None) -> Identification:
    classifiers = [m for m in models_in(provenance) if m.get("role") == "classifier"]
    dates = [
        str(run.get("finished", ""))
        for run in runs_in(provenance)
        if any(m.get("role") == "classifier" for m in run.get("models") or [])
    ]
    return Identification(classifiers, dates[0] if dates else "")


def _coverage(
    occurrences: Sequence[Occurrence],
    deployments: Deployments,
    nights: Sequence[SampledNight] | None,
) -> Coverage:
    """What the records span: the occurrences' deployments and nights, or every night
    sampled (event core: a night without a moth is data too)."""
    sampled = nights or occurrences
    used = sorted({o.deployment for o in sampled})
    points = []
    for name in used:
        place = deployments.get(name)
        if place.latitude is not None and place.longitude is not None:
            points.append((place.latitude, place.longitude))
    dates = sorted(o.night for o in sampled) or [""]
    taxa = sorted(
        {(taxon_rank(o.taxon_rank), o.taxon) for o in occurrences if kind_of(o.taxon) == TAXON}
    )
    return Coverage(points, dates[0], dates[-1], used, taxa)


def _methods(
    provenance: Mapping[str, Any] | None,
    left_out: Counter[str],
    include_other: bool,
    nights: Sequence[SampledNight] | None,
    records: Sequence[Mapping[str, str]],
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
    if nights is not None:
        with_records = {record["eventID"] for record in records}
        empty = sum(f"{n.deployment}/{n.night}" not in with_records for n in nights)
        steps.append(
            f"Sampling events: each night a deployment's camera photographed the sheet is an "
            f"event (eventID deployment/night, its parent the deployment's event), from the "
            f"first frame to the last; {len(nights)} night{'s' * (len(nights) != 1)} sampled, "
            f"{empty} without an occurrence in this archive: the trap ran and no moth of the "
            "kinds kept here was counted."
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
