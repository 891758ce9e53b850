"""Sampling events: the terms of ``event.txt``, the core of a sampling-event archive.

GBIF's shape for monitoring data: each trap-night a deployment's camera sampled (a
row of ``nights.csv``) is an event, ``<deployment>/<night>``, whose parent is the
deployment's event, ``<deployment>`` (the whole run of nights at that place). A night
with moths has occurrences linked to it by ``eventID``; a night without one is an
event with none: the trap ran and nothing was counted, an absence GBIF keeps. The
terms are in docs/commands/darwin-core.md. No torch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from moths_framework.nights.deployments import Deployments
from moths_framework.nights.sampled_nights import SampledNight
from moths_framework.occurrences.darwin_core import interval, one_line, place_terms
from moths_framework.occurrences.dataset import DatasetInfo

__all__ = ["EVENT_TERMS", "event_records", "individuals_by_event"]

# event.txt's columns, in order; eventID first (the archive's id column).
EVENT_TERMS = (
    "eventID", "parentEventID", "license", "datasetID", "datasetName",
    "eventDate", "samplingProtocol", "sampleSizeValue", "sampleSizeUnit", "samplingEffort",
    "locationID", "countryCode", "decimalLatitude", "decimalLongitude", "geodeticDatum",
    "coordinateUncertaintyInMeters", "eventRemarks",
)  # fmt: skip


def event_records(
    nights: Sequence[SampledNight],
    deployments: Deployments,
    dataset: DatasetInfo,
    counted: Mapping[str, int],
) -> list[dict[str, str]]:
    """The :data:`EVENT_TERMS` of each deployment (a parent event) followed by its
    nights, deployments in order of their first night. ``counted``: the individuals
    in the archive's occurrences per ``eventID`` (a night not in it has none)."""
    by_deployment: dict[str, list[SampledNight]] = defaultdict(list)
    for night in sorted(nights, key=lambda n: (n.deployment, n.night)):
        by_deployment[night.deployment].append(night)
    records = []
    for name, its_nights in by_deployment.items():
        place = place_terms(deployments.get(name), dataset)
        records.append(_deployment_event(name, its_nights, place, dataset))
        records += [_night_event(n, place, dataset, counted) for n in its_nights]
    return [{term: one_line(record[term]) for term in EVENT_TERMS} for record in records]


def _deployment_event(
    name: str, nights: Sequence[SampledNight], place: dict[str, str], dataset: DatasetInfo
) -> dict[str, str]:
    frames = sum(n.frames for n in nights)
    return {
        **_dataset_terms(dataset),
        "eventID": name,
        "parentEventID": "",
        "eventDate": interval(nights[0].first_frame, nights[-1].last_frame),
        **place,
        "sampleSizeValue": "",
        "sampleSizeUnit": "",
        "samplingEffort": f"{len(nights)} trap-night{'s' * (len(nights) != 1)}",
        "eventRemarks": f"deployment {name}: an automated light-trap camera, {len(nights)} "
        f"night{'s' * (len(nights) != 1)} sampled, {frames} frames",
    }


def _night_event(
    night: SampledNight, place: dict[str, str], dataset: DatasetInfo, counted: Mapping[str, int]
) -> dict[str, str]:
    event = f"{night.deployment}/{night.night}"
    hours = night.hours
    individuals = counted.get(event, 0)
    found = (
        f"{individuals} individual{'s' * (individuals != 1)} in this archive's occurrences"
        if individuals
        else "no occurrence in this archive"
    )
    return {
        **_dataset_terms(dataset),
        "eventID": event,
        "parentEventID": night.deployment,
        "eventDate": interval(night.first_frame, night.last_frame),
        **place,
        # the camera's hours from the first frame to the last; none for a single frame
        "sampleSizeValue": f"{hours:.4g}" if hours > 0 else "",
        "sampleSizeUnit": "hour" if hours > 0 else "",
        "samplingEffort": f"1 trap-night, {night.frames} frame{'s' * (night.frames != 1)}",
        "eventRemarks": f"night {night.night} at {night.deployment}: {night.frames} "
        f"frame{'s' * (night.frames != 1)} searched; {found}",
    }


def _dataset_terms(dataset: DatasetInfo) -> dict[str, str]:
    return {
        "license": dataset.license_uri,
        "datasetID": dataset.dataset_id,
        "datasetName": dataset.title,
    }


def individuals_by_event(records: Sequence[Mapping[str, str]]) -> Counter[str]:
    """The individuals of occurrence ``records`` per ``eventID``."""
    counts: Counter[str] = Counter()
    for record in records:
        counts[record["eventID"]] += int(record["individualCount"] or 0)
    return counts
