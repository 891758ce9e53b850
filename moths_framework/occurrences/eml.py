"""``eml.xml``: the archive's dataset metadata, EML 2.2.0 as GBIF's metadata profile 1.3 has it.

Title, creators (also the metadata provider and contact), publication date,
language, abstract, license (``intellectualRights``, worded as GBIF's IPT words it),
the coverage the records span (a bounding box of the deployments, the first and last
night) and the methods: how frames became counts, which models identified (name,
version, sha256), and the run ids of the run.json chain behind the archive. No torch.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moths_framework.occurrences.dataset import Creator, DatasetInfo

__all__ = ["EML_NAMESPACE", "Coverage", "eml_xml"]

EML_NAMESPACE = "https://eml.ecoinformatics.org/eml-2.2.0"
# GBIF's metadata profile 1.3 (EML 2.2.0), what GBIF's IPT writes and validates against
_SCHEMA = f"{EML_NAMESPACE} http://rs.gbif.org/schema/eml-gbif-profile/1.3/eml.xsd"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_UNKNOWN_CREATOR = Creator(organization="unknown (name the creators in dataset.yaml)")


@dataclass(frozen=True)
class Coverage:
    """What the records span: deployments' coordinates, the first and last night, the taxa."""

    points: Sequence[tuple[float, float]]  # (latitude, longitude)
    first_night: str
    last_night: str
    places: Sequence[str] = ()
    taxa: Sequence[tuple[str, str]] = ()  # (rank, name)


def eml_xml(
    dataset: DatasetInfo,
    coverage: Coverage,
    methods: Sequence[str],
    published: str,
    package_id: str | None = None,
) -> str:
    """The EML document; ``methods``: one paragraph per method step; ``published``: a date."""
    ET.register_namespace("eml", EML_NAMESPACE)
    ET.register_namespace("xsi", _XSI)
    root = ET.Element(
        f"{{{EML_NAMESPACE}}}eml",
        {
            f"{{{_XSI}}}schemaLocation": _SCHEMA,
            "packageId": package_id or str(uuid.uuid4()),
            "system": "http://gbif.org",
            "scope": "system",
            _LANG: dataset.language,
        },
    )
    node = ET.SubElement(root, "dataset")
    if dataset.dataset_id:
        _text(node, "alternateIdentifier", dataset.dataset_id)
    _text(node, "title", dataset.title or _default_title(coverage), {_LANG: dataset.language})
    creators = dataset.creators or (_UNKNOWN_CREATOR,)
    for creator in creators:
        _party(node, "creator", creator)
    _party(node, "metadataProvider", creators[0])
    _text(node, "pubDate", published)
    _text(node, "language", dataset.language)
    _paragraphs(node, "abstract", [dataset.abstract or _default_abstract(coverage)])
    _rights(node, dataset)
    _coverage(node, coverage)
    _party(node, "contact", creators[0])
    step_parent = ET.SubElement(node, "methods")
    for paragraph in methods:
        _paragraphs(ET.SubElement(step_parent, "methodStep"), "description", [paragraph])
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _text(parent: ET.Element, tag: str, text: str, attrib: Mapping[str, Any] | None = None):
    element = ET.SubElement(parent, tag, dict(attrib or {}))
    element.text = text
    return element


def _paragraphs(parent: ET.Element, tag: str, paragraphs: Sequence[str]) -> None:
    element = ET.SubElement(parent, tag)
    for paragraph in paragraphs:
        _text(element, "para", paragraph)


def _party(parent: ET.Element, tag: str, creator: Creator) -> None:
    """A ResponsibleParty: individualName (given names, surname), organisation, email."""
    element = ET.SubElement(parent, tag)
    if creator.name:
        person = ET.SubElement(element, "individualName")
        *given, surname = creator.name.split()
        if given:
            _text(person, "givenName", " ".join(given))
        _text(person, "surName", surname)
    if creator.organization:
        _text(element, "organizationName", creator.organization)
    if creator.email:
        _text(element, "electronicMailAddress", creator.email)


def _rights(parent: ET.Element, dataset: DatasetInfo) -> None:
    para = ET.SubElement(ET.SubElement(parent, "intellectualRights"), "para")
    para.text = "This work is licensed under a "
    link = ET.SubElement(para, "ulink", {"url": dataset.license_uri})
    _text(link, "citetitle", f"{dataset.license_title} License")
    link.tail = "."


def _coverage(parent: ET.Element, coverage: Coverage) -> None:
    node = ET.SubElement(parent, "coverage")
    if coverage.points:
        geographic = ET.SubElement(node, "geographicCoverage")
        places = ", ".join(coverage.places) or "the deployments"
        _text(geographic, "geographicDescription", f"Light-trap deployments: {places}")
        box = ET.SubElement(geographic, "boundingCoordinates")
        latitudes = [p[0] for p in coverage.points]
        longitudes = [p[1] for p in coverage.points]
        _text(box, "westBoundingCoordinate", f"{min(longitudes):.6f}")
        _text(box, "eastBoundingCoordinate", f"{max(longitudes):.6f}")
        _text(box, "northBoundingCoordinate", f"{max(latitudes):.6f}")
        _text(box, "southBoundingCoordinate", f"{min(latitudes):.6f}")
    dates = ET.SubElement(ET.SubElement(node, "temporalCoverage"), "rangeOfDates")
    _text(ET.SubElement(dates, "beginDate"), "calendarDate", coverage.first_night)
    _text(ET.SubElement(dates, "endDate"), "calendarDate", coverage.last_night)
    if coverage.taxa:
        taxonomic = ET.SubElement(node, "taxonomicCoverage")
        for rank, name in coverage.taxa:
            classification = ET.SubElement(taxonomic, "taxonomicClassification")
            if rank:
                _text(classification, "taxonRankName", rank)
            _text(classification, "taxonRankValue", name)


def _default_title(coverage: Coverage) -> str:
    return f"Moths at automated light traps, {coverage.first_night} to {coverage.last_night}"


def _default_abstract(coverage: Coverage) -> str:
    return (
        "Moths counted per species per night on the frames of automated light-trap cameras "
        f"({coverage.first_night} to {coverage.last_night}): machine observations, not verified "
        "by a person."
    )
