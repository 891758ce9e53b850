"""The zoo index: ``index.json`` (``"schema": 1``), its entries and where indexes live.

An index is a JSON file listing models; each entry carries what is needed to
use the model without opening it (ranks, preprocessing, calibration, metrics,
license, ...) and its files, each with a ``url`` (``https://``, ``file://`` or
a path relative to the index), a ``sha256`` and a ``size``. Every index read
is checked against the JSON Schema ``moths_framework/zoo/index.schema.json``
(:func:`moths_framework.zoo.schema.validate_index`); one over plain ``http://``
is refused unless allowed (:mod:`moths_framework.zoo.transport`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from moths_framework.atomic_files import write_text_atomically
from moths_framework.zoo.errors import ZooError, ZooOfflineError
from moths_framework.zoo.schema import validate_index
from moths_framework.zoo.transport import check_transport

__all__ = [
    "CLASSIFICATION",
    "DETECTION",
    "INDEX_ENV",
    "OFFLINE_ENV",
    "SCHEMA_VERSION",
    "ZooEntry",
    "ZooFile",
    "ZooIndex",
    "default_index_locations",
    "find_entry",
    "is_offline",
    "load_index",
    "load_indexes",
    "parse_ref",
]

SCHEMA_VERSION = 1
INDEX_ENV = "MOTHS_ZOO_INDEX"
OFFLINE_ENV = "MOTHS_OFFLINE"
ROLES = ("onnx", "checkpoint")
CLASSIFICATION, DETECTION = "classification", "detection"  # an entry's task
# The project's own index, when running from a checkout (the demo model lives there).
_CHECKOUT_INDEX = Path(__file__).resolve().parents[2] / "zoo" / "index.json"


def is_offline() -> bool:
    """True when ``MOTHS_OFFLINE`` is set to 1/true/yes: nothing touches the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class ZooFile:
    """One file of a model: its role, where it is, and what it must hash to."""

    role: str
    url: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        """The file name at the end of the url (``model.onnx``)."""
        return Path(urlparse(self.url).path).name or f"{self.role}.bin"


@dataclass(frozen=True)
class ZooEntry:
    """One model version of an index; ``data`` is the entry exactly as in the JSON."""

    data: dict[str, Any]
    index: ZooIndex

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def version(self) -> str:
        return self.data["version"]

    @property
    def ref(self) -> str:
        """``id@version``."""
        return f"{self.id}@{self.version}"

    @property
    def task(self) -> str:
        """``classification`` (a species classifier; entries without ``task``) or ``detection``."""
        return self.data.get("task", CLASSIFICATION)

    @property
    def files(self) -> list[ZooFile]:
        return [
            ZooFile(f["role"], f["url"], f["sha256"].lower(), f["size"]) for f in self.data["files"]
        ]

    def file(self, role: str) -> ZooFile:
        """The file with ``role`` (``onnx`` or ``checkpoint``).

        Raises:
            ZooError: the entry has no such file.
        """
        for f in self.files:
            if f.role == role:
                return f
        have = ", ".join(f.role for f in self.files)
        raise ZooError(f"zoo model {self.ref} has no {role} file (it has: {have})")

    def source_of(self, file: ZooFile) -> str:
        """The file's absolute location: an http(s) URL or a local path."""
        return self.index.resolve_url(file.url)


@dataclass(frozen=True)
class ZooIndex:
    """A loaded index: where it came from and its parsed JSON."""

    location: str  # a URL or an absolute path of index.json
    data: dict[str, Any]

    @property
    def entries(self) -> list[ZooEntry]:
        return [ZooEntry(e, self) for e in self.data.get("models", [])]

    def resolve_url(self, url: str) -> str:
        """``url`` made absolute: relative paths are relative to the index."""
        scheme = urlparse(url).scheme
        if scheme in ("http", "https"):
            return url
        if scheme == "file":
            return urllib.request.url2pathname(urlparse(url).path)
        if _is_url(self.location):
            return urljoin(self.location, url)
        return str(Path(self.location).parent / url)


def _is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def default_index_locations(given: list[str] | None = None) -> list[str]:
    """The indexes to search, in order.

    ``given`` (``--index``, repeatable) wins; else ``MOTHS_ZOO_INDEX`` (several
    separated by spaces); else the project's own ``zoo/index.json`` when
    running from a checkout.

    Raises:
        ZooError: none is configured.
    """
    if given:
        return list(given)
    from_env = os.environ.get(INDEX_ENV, "").split()
    if from_env:
        return from_env
    if _CHECKOUT_INDEX.is_file():
        return [str(_CHECKOUT_INDEX)]
    raise ZooError(
        f"no zoo index configured: pass --index URL|PATH or set {INDEX_ENV} "
        "(e.g. the zoo/index.json of a moths-framework checkout)"
    )


def load_index(location: str, cache_root: Path | None = None) -> ZooIndex:
    """Read one index: a local ``index.json`` (or its folder), or an http(s) URL.

    A URL's index is kept in ``cache_root`` so it can be read offline later.

    Raises:
        ZooError: missing, unreadable, not schema 1, not valid by the JSON Schema,
            plain http not allowed, or offline with no cached copy.
    """
    if _is_url(location):
        check_transport(location, "zoo index")
        text = _fetch_index_text(location, cache_root)
        where = location
    else:
        path = Path(location).expanduser()
        path = path / "index.json" if path.is_dir() else path
        if not path.is_file():
            raise ZooError(f"zoo index {path} not found")
        text = path.read_text(encoding="utf-8")
        where = str(path.resolve())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ZooError(f"zoo index {where} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        found = data.get("schema") if isinstance(data, dict) else None
        raise ZooError(
            f"zoo index {where} has schema {found!r}; this moths-framework reads schema "
            f"{SCHEMA_VERSION}"
        )
    validate_index(data, where)
    return ZooIndex(where, data)


def load_indexes(
    locations: list[str] | None = None, cache_root: Path | None = None
) -> list[ZooIndex]:
    """Every configured index (see :func:`default_index_locations`), loaded."""
    return [load_index(loc, cache_root) for loc in default_index_locations(locations)]


def _fetch_index_text(url: str, cache_root: Path | None) -> str:
    cached = None
    if cache_root is not None:
        cached = cache_root / "indexes" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")
    if is_offline():
        if cached is not None and cached.is_file():
            return cached.read_text(encoding="utf-8")
        raise ZooOfflineError(
            f"{OFFLINE_ENV}=1 and the zoo index {url} was never downloaded; run once with "
            "network access (or unset MOTHS_OFFLINE)"
        )
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            check_transport(response.geturl(), f"zoo index {url} redirects to")
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as err:
        if cached is not None and cached.is_file():
            return cached.read_text(encoding="utf-8")  # offline by accident: last known index
        raise ZooError(f"cannot read zoo index {url}: {err}") from err
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(cached, text)
    return text


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``"zoo:ID@V"``, ``"ID@V"`` or ``"ID"`` -> ``(ID, V or None)``."""
    ref = ref.removeprefix("zoo:")
    model_id, _, version = ref.partition("@")
    if not model_id:
        raise ZooError(f"zoo reference {ref!r} has no model id; write ID or ID@VERSION")
    return model_id, version or None


def version_key(version: str) -> tuple:
    """Sort key: numeric parts numerically (``1.10`` after ``1.9``)."""
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+]", version)
    )


def find_entry(indexes: list[ZooIndex], ref: str) -> ZooEntry:
    """The entry ``ID[@VERSION]`` names; without a version, the newest.

    The first index that has the id wins.

    Raises:
        ZooError: unknown id or version; the message lists close matches.
    """
    model_id, version = parse_ref(ref)
    entries = [e for index in indexes for e in index.entries]
    same_id = [e for e in entries if e.id == model_id]
    if not same_id:
        ids = sorted({e.id for e in entries})
        close = difflib.get_close_matches(model_id, ids, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        where = ", ".join(i.location for i in indexes)
        raise ZooError(f"no model {model_id!r} in the zoo index ({where}){hint}")
    first_index = same_id[0].index
    same_id = [e for e in same_id if e.index is first_index]
    if version is None:
        return max(same_id, key=lambda e: version_key(e.version))
    for entry in same_id:
        if entry.version == version:
            return entry
    versions = sorted((e.version for e in same_id), key=version_key)
    close = difflib.get_close_matches(version, versions, n=3, cutoff=0.3)
    hint = f"; did you mean {', '.join(f'{model_id}@{v}' for v in close)}?" if close else ""
    raise ZooError(
        f"zoo model {model_id!r} has no version {version!r} (versions: {', '.join(versions)}){hint}"
    )
