"""An occurrence as a Darwin Core record: the terms of ``occurrence.txt``.

One record per row of ``occurrences.csv`` (a taxon seen at a deployment in a night):
``individualCount`` is the number of tracks, ``eventDate`` the interval from first to
last seen, ``basisOfRecord`` ``MachineObservation``, ``identifiedBy`` the classifier
(name, version, sha256) found through the run.json chain, and the place and trap
from ``deployments.csv``. ``occurrenceID`` is stable: the same deployment, night,
taxon and classifier give the same id in every export. ``Other`` and unanswered
tracks, when asked for, are recorded as the order Lepidoptera with the model's words
in ``verbatimIdentification``. ``taxonRank`` takes GBIF's rank vocabulary
(:data:`TAXON_RANKS`); a hierarchy's own rank outside it (``group``, ``macro``) leaves
``taxonRank`` empty and is kept in ``verbatimTaxonRank``, which always holds the rank
as the model named it. The terms are in docs/commands/darwin-core.md. No torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any
from urllib.parse import quote, urljoin

from moths_framework.nights.deployments import Deployment
from moths_framework.occurrences.counts import Occurrence
from moths_framework.occurrences.dataset import DatasetInfo
from moths_framework.occurrences.taxa import TAXON, kind_of

__all__ = [
    "DCTERMS",
    "DWC",
    "TAXON_RANKS",
    "TERMS",
    "Identification",
    "darwin_core_record",
    "interval",
    "one_line",
    "place_terms",
    "taxon_rank",
    "term_uri",
]

DWC = "http://rs.tdwg.org/dwc/terms/"
DCTERMS = "http://purl.org/dc/terms/"
# occurrence.txt's columns, in order; occurrenceID first (the archive's id column).
TERMS = (
    "occurrenceID", "basisOfRecord", "occurrenceStatus", "license", "datasetID", "datasetName",
    "eventID", "eventDate", "samplingProtocol", "samplingEffort",
    "locationID", "countryCode", "decimalLatitude", "decimalLongitude", "geodeticDatum",
    "coordinateUncertaintyInMeters",
    "scientificName", "taxonRank", "verbatimTaxonRank", "kingdom", "phylum", "class", "order",
    "verbatimIdentification", "identifiedBy", "dateIdentified",
    "identificationVerificationStatus", "identificationRemarks",
    "individualCount", "associatedMedia", "occurrenceRemarks",
)  # fmt: skip
_DCTERMS_TERMS = {"license"}
HIGHER_TAXA = {"kingdom": "Animalia", "phylum": "Arthropoda", "class": "Insecta"}
ORDER = "Lepidoptera"
# GBIF's rank vocabulary (http://rs.gbif.org/vocabulary/gbif/rank), its Linnaean ranks
# from domain to form: what taxonRank may hold.
TAXON_RANKS = frozenset(
    """domain superkingdom kingdom subkingdom infrakingdom superphylum phylum subphylum
    infraphylum superclass class subclass infraclass superorder order suborder infraorder
    parvorder superfamily family subfamily infrafamily supertribe tribe subtribe infratribe
    genus subgenus infragenus section subsection series subseries species subspecies
    variety subvariety form subform""".split()
)


def taxon_rank(rank: str) -> str:
    """``rank`` as Darwin Core's ``taxonRank`` (GBIF's vocabulary, lower case), or ``""``
    for a rank outside it (a hierarchy's own, such as ``group``)."""
    name = rank.strip().lower()
    return name if name in TAXON_RANKS else ""


def term_uri(term: str) -> str:
    """The term's URI: Darwin Core's namespace, or Dublin Core's for ``license``."""
    return (DCTERMS if term in _DCTERMS_TERMS else DWC) + term


@dataclass(frozen=True)
class Identification:
    """Who identified: the classifier models behind the counts, and when they ran."""

    models: Sequence[Mapping[str, Any]] = ()
    date: str = ""

    @property
    def identified_by(self) -> str:
        """``name version (sha256 ...)`` per classifier, joined by `` | ``."""
        return " | ".join(
            " ".join(str(p) for p in (m.get("name"), m.get("version")) if p)
            + f" (sha256 {m.get('sha256')})"
            for m in self.models
        )

    @property
    def model_key(self) -> str:
        """The first 12 hex digits of each classifier's sha256 (``unknown-model`` without)."""
        return "+".join(str(m.get("sha256", ""))[:12] for m in self.models) or "unknown-model"


def darwin_core_record(
    occurrence: Occurrence,
    deployment: Deployment,
    identification: Identification,
    dataset: DatasetInfo,
) -> dict[str, str]:
    """The :data:`TERMS` of one occurrence (empty strings where nothing is known)."""
    taxon, rank = occurrence.taxon, occurrence.taxon_rank
    is_taxon = kind_of(taxon) == TAXON
    key = "/".join([occurrence.deployment, occurrence.night, _slug(taxon or "unidentified")])
    record = {
        "occurrenceID": f"{dataset.occurrence_id_prefix}{key}/{identification.model_key}",
        "basisOfRecord": "MachineObservation",
        "occurrenceStatus": "present",
        "license": dataset.license_uri,
        "datasetID": dataset.dataset_id,
        "datasetName": dataset.title,
        "eventID": f"{occurrence.deployment}/{occurrence.night}",
        "eventDate": interval(occurrence.first_seen, occurrence.last_seen),
        "samplingEffort": "1 trap-night",
        **place_terms(deployment, dataset),
        "scientificName": taxon if is_taxon else ORDER,
        "taxonRank": taxon_rank(rank) if is_taxon else "order",
        "verbatimTaxonRank": rank if is_taxon else "",
        **HIGHER_TAXA,
        "order": ORDER,
        "verbatimIdentification": taxon,
        "identifiedBy": identification.identified_by,
        "dateIdentified": identification.date,
        "identificationVerificationStatus": "unverified",
        "identificationRemarks": _identification_remarks(occurrence),
        "individualCount": str(occurrence.individuals),
        "associatedMedia": _media(occurrence.best_crop, dataset.media_base_url),
        "occurrenceRemarks": (
            f"{occurrence.individuals} individual{'s' * (occurrence.individuals != 1)} "
            f"(tracks) in {occurrence.detections} detections on frames of an automated "
            "light-trap camera"
        ),
    }
    return {term: one_line(record[term]) for term in TERMS}


def place_terms(deployment: Deployment, dataset: DatasetInfo) -> dict[str, str]:
    """Where and how a deployment sampled: ``samplingProtocol``, ``locationID``,
    ``countryCode``, the coordinates, their datum and uncertainty (empty when unknown)."""
    located = deployment.latitude is not None and deployment.longitude is not None
    return {
        "samplingProtocol": dataset.sampling_protocol or _protocol(deployment.trap_type),
        "locationID": deployment.id,
        "countryCode": dataset.country_code,
        "decimalLatitude": _number(deployment.latitude),
        "decimalLongitude": _number(deployment.longitude),
        "geodeticDatum": "WGS84" if located else "",
        "coordinateUncertaintyInMeters": _number(dataset.coordinate_uncertainty_m)
        if located
        else "",
    }


def _slug(text: str) -> str:
    return re.sub(r"\s+", "_", text.strip())


def interval(first: str, last: str) -> str:
    """ISO 8601: one time, or ``first/last``."""
    return first if first == last else f"{first}/{last}"


def _protocol(trap_type: str) -> str:
    trap = f" ({trap_type})" if trap_type else ""
    return f"light trap{trap} with an automated camera; individuals counted by tracking"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.8g}"


def _identification_remarks(occurrence: Occurrence) -> str:
    prob = "" if occurrence.mean_prob is None else f"; mean probability {occurrence.mean_prob:.3f}"
    rank = f" at rank {occurrence.taxon_rank}" if occurrence.taxon_rank else ""
    return (
        f"machine identification{rank}: each track's answer is the confidence-weighted "
        f"vote of its detections{prob}"
    )


def _media(crop: str, base_url: str) -> str:
    """``base_url`` + the crop's path (as a relative POSIX path, so it stays under the
    base), or the path as written without a base."""
    if not crop or not base_url:
        return crop
    path = PureWindowsPath(crop)  # reads / and \ alike
    relative = "/".join(path.parts[1:] if path.anchor else path.parts)
    return urljoin(base_url if base_url.endswith("/") else base_url + "/", quote(relative))


def one_line(value: str) -> str:
    """A cell of a tab-separated file: no tab or line break inside."""
    return re.sub(r"[\t\r\n]+", " ", value)
