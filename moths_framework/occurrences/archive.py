"""A Darwin Core Archive: its data files, ``meta.xml``, ``eml.xml`` and ``run.json``.

Two shapes. Occurrence core (the default): ``occurrence.txt``, one record per
occurrence, ``occurrenceID`` its id. Sampling-event core: ``event.txt``, one record
per event (``eventID`` its id), with ``occurrence.txt`` as an extension whose
``eventID`` column links each occurrence to its event (meta.xml's ``coreid``). Each
data file is UTF-8, tab-separated, one header line of term names, no quoting (no cell
holds a tab or line break); ``meta.xml`` declares each file's row type and each
column's term URI, and names ``eml.xml`` as the metadata. ``run.json`` (the
provenance of the archive and, through its inputs, of every step before it) rides
along; meta.xml lists only the Darwin Core files. Written as a zip (``.zip``) or a
folder. No torch.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moths_framework.atomic_files import replaced_atomically, temporary_folder_beside
from moths_framework.occurrences.darwin_core import DWC, term_uri
from moths_framework.output_folders import replace_folder

__all__ = [
    "EVENT_ROW_TYPE",
    "OCCURRENCE_ROW_TYPE",
    "DataFile",
    "data_text",
    "meta_xml",
    "write_archive",
]

META_FILE, EML_FILE, RUN_FILE = "meta.xml", "eml.xml", "run.json"
OCCURRENCE_ROW_TYPE = DWC + "Occurrence"
EVENT_ROW_TYPE = DWC + "Event"
_TEXT_NAMESPACE = "http://rs.tdwg.org/dwc/text/"


@dataclass(frozen=True)
class DataFile:
    """One data file of the archive: its name, row type, columns (terms) and records;
    ``key``: the term of its id column (the core's own id, or an extension's link to
    the core)."""

    name: str
    row_type: str
    terms: Sequence[str]
    records: Sequence[Mapping[str, str]]
    key: str


def meta_xml(core: DataFile, extensions: Sequence[DataFile] = ()) -> str:
    """The archive descriptor: each file, its format, id column and term per column."""
    parts = [_file_xml("core", core, "id")]
    parts += [_file_xml("extension", extension, "coreid") for extension in extensions]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<archive xmlns="{_TEXT_NAMESPACE}" metadata="{EML_FILE}">\n'
        + "".join(parts)
        + "</archive>\n"
    )


def _file_xml(tag: str, data: DataFile, id_tag: str) -> str:
    fields = "\n".join(
        f'    <field index="{index}" term="{term_uri(term)}"/>'
        for index, term in enumerate(data.terms)
    )
    return (
        f'  <{tag} encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" '
        f'fieldsEnclosedBy="" ignoreHeaderLines="1" rowType="{data.row_type}">\n'
        f"    <files>\n      <location>{data.name}</location>\n    </files>\n"
        f'    <{id_tag} index="{list(data.terms).index(data.key)}"/>\n'
        f"{fields}\n"
        f"  </{tag}>\n"
    )


def data_text(data: DataFile) -> str:
    """A data file's text: a header of term names, then one tab-separated line per record."""
    lines = ["\t".join(data.terms), *("\t".join(r[t] for t in data.terms) for r in data.records)]
    return "\n".join(lines) + "\n"


def write_archive(
    output: str | os.PathLike,
    core: DataFile,
    extensions: Sequence[DataFile],
    eml: str,
    run_record: Mapping[str, Any],
    command: str,
) -> None:
    """Write the archive to ``output``: a zip when it ends in ``.zip`` (atomically), else a
    folder (replaced only when ``command`` wrote it; see :mod:`.output_folders`)."""
    files = {data.name: data_text(data) for data in (core, *extensions)}
    files |= {
        META_FILE: meta_xml(core, extensions),
        EML_FILE: eml,
        RUN_FILE: json.dumps(run_record, indent=1, ensure_ascii=False, default=str) + "\n",
    }
    output = Path(output)
    if output.suffix.lower() == ".zip":
        _write_zip(output, files)
        return
    staging = temporary_folder_beside(output)
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8", newline="")
        replace_folder(staging, output, command)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it became output


def _write_zip(path: Path, files: Mapping[str, str]) -> None:
    stamp = datetime.now(timezone.utc).timetuple()[:6]
    with replaced_atomically(path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in files.items():
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, text.encode("utf-8"))
