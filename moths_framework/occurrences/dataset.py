"""``dataset.yaml``: what a Darwin Core Archive says about itself (its EML and record terms).

Every key is optional::

    title: Moth-trap nights at De Hoge Veluwe, 2024
    abstract: Automated light traps ...
    creators:                       # or creator: one person or organisation
      - name: Jane Doe              # given name(s), then the surname
        organization: Example Moth Society
        email: jane@example.org
    license: CC-BY-4.0              # CC0-1.0, CC-BY-4.0 or CC-BY-NC-4.0 (what GBIF accepts)
    language: en
    dataset_id: https://doi.org/10.xxxx/yyyy   # datasetID of every record
    occurrence_id_prefix: "urn:example:moths:" # put before each occurrenceID
    media_base_url: https://example.org/crops/ # associatedMedia: this URL + the crop's path
    country_code: NL                # ISO 3166-1 alpha-2
    coordinate_uncertainty_m: 10
    sampling_protocol: light trap (LepiLED) with an automated camera

Without a file (or a key) the defaults below apply; an unknown key is an error (a
misspelt key would otherwise be lost without a word). PyYAML reads the file (the
``dwc`` extra). No torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["LICENSES", "Creator", "DatasetError", "DatasetInfo", "read_dataset"]

# license -> (URI, the title GBIF's IPT writes in EML)
LICENSES = {
    "CC0-1.0": (
        "http://creativecommons.org/publicdomain/zero/1.0/legalcode",
        "Public Domain (CC0 1.0)",
    ),
    "CC-BY-4.0": (
        "http://creativecommons.org/licenses/by/4.0/legalcode",
        "Creative Commons Attribution (CC-BY) 4.0",
    ),
    "CC-BY-NC-4.0": (
        "http://creativecommons.org/licenses/by-nc/4.0/legalcode",
        "Creative Commons Attribution Non Commercial (CC-BY-NC) 4.0",
    ),
}
DEFAULT_LICENSE = "CC-BY-4.0"


class DatasetError(ValueError):
    """A ``dataset.yaml`` that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Creator:
    """A person (``name``) or an organisation; at least one of them."""

    name: str = ""
    organization: str = ""
    email: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset's metadata (see the module for each key)."""

    title: str = ""
    abstract: str = ""
    creators: tuple[Creator, ...] = ()
    license: str = DEFAULT_LICENSE
    language: str = "en"
    dataset_id: str = ""
    occurrence_id_prefix: str = ""
    media_base_url: str = ""
    country_code: str = ""
    coordinate_uncertainty_m: float | None = None
    sampling_protocol: str = ""
    license_given: bool = field(default=False, compare=False)

    @property
    def license_uri(self) -> str:
        return LICENSES[self.license][0]

    @property
    def license_title(self) -> str:
        return LICENSES[self.license][1]


def read_dataset(path: str | os.PathLike | None) -> DatasetInfo:
    """The dataset's metadata from ``path`` (YAML; ``None``: the defaults).

    Raises:
        DatasetError: unreadable, not a mapping, an unknown key or license, a creator
            with neither name nor organisation.
    """
    if path is None:
        return DatasetInfo()
    try:
        import yaml
    except ImportError:
        raise DatasetError(
            "reading dataset.yaml needs PyYAML: pip install 'moths-framework[dwc]'"
        ) from None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        text = " ".join(str(error).split())
        raise DatasetError(f"cannot read {path}: {text}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected keys (title, creators, license ...), got {data!r}")
    return _dataset(Path(path), data)


def _dataset(path: Path, data: dict[str, Any]) -> DatasetInfo:
    data = dict(data)
    if "creator" in data:
        data.setdefault("creators", [data.pop("creator")])
    known = {f.name for f in fields(DatasetInfo)} - {"license_given"}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise DatasetError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")
    license_name = str(data.get("license", DEFAULT_LICENSE))
    if license_name not in LICENSES:
        raise DatasetError(
            f"{path}: license {license_name!r} is not one GBIF accepts: {', '.join(LICENSES)}"
        )
    creators = data.get("creators") or []
    if not isinstance(creators, list):
        creators = [creators]
    values: dict[str, Any] = {
        k: str(v).strip() for k, v in data.items() if k not in ("creators", "license")
    }
    uncertainty = data.get("coordinate_uncertainty_m")
    if uncertainty is not None:
        try:
            values["coordinate_uncertainty_m"] = float(uncertainty)
        except (TypeError, ValueError):
            raise DatasetError(
                f"{path}: coordinate_uncertainty_m {uncertainty!r} is no number"
            ) from None
    return DatasetInfo(
        **values,
        creators=tuple(_creator(path, c) for c in creators),
        license=license_name,
        license_given="license" in data,
    )


def _creator(path: Path, entry: Any) -> Creator:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or not (entry.get("name") or entry.get("organization")):
        raise DatasetError(f"{path}: a creator needs a name or an organization, got {entry!r}")
    unknown = sorted(set(map(str, entry)) - {"name", "organization", "email"})
    if unknown:
        raise DatasetError(f"{path}: unknown creator key(s) {', '.join(unknown)}")
    return Creator(**{k: str(v).strip() for k, v in entry.items()})
