"""A Darwin Core Archive: ``occurrence.txt``, ``meta.xml``, ``eml.xml`` and ``run.json``.

``occurrence.txt`` is UTF-8, tab-separated, one header line, no quoting (no cell
holds a tab or line break); ``meta.xml`` declares it the core with row type
``http://rs.tdwg.org/dwc/terms/Occurrence``, ``occurrenceID`` (column 0) as its id
and each column's term URI, and names ``eml.xml`` as the metadata. ``run.json`` (the
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moths_framework.atomic_files import replaced_atomically, temporary_folder_beside
from moths_framework.occurrences.darwin_core import TERMS, term_uri
from moths_framework.output_folders import replace_folder

__all__ = [
    "CORE_FILE",
    "OCCURRENCE_ROW_TYPE",
    "meta_xml",
    "occurrence_txt",
    "write_archive",
]

CORE_FILE, META_FILE, EML_FILE, RUN_FILE = "occurrence.txt", "meta.xml", "eml.xml", "run.json"
OCCURRENCE_ROW_TYPE = "http://rs.tdwg.org/dwc/terms/Occurrence"
_TEXT_NAMESPACE = "http://rs.tdwg.org/dwc/text/"


def meta_xml(terms: Sequence[str] = TERMS) -> str:
    """The archive descriptor: the core file, its format, id column and term per column."""
    fields = "\n".join(
        f'    <field index="{index}" term="{term_uri(term)}"/>' for index, term in enumerate(terms)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<archive xmlns="{_TEXT_NAMESPACE}" metadata="{EML_FILE}">\n'
        '  <core encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" '
        f'fieldsEnclosedBy="" ignoreHeaderLines="1" rowType="{OCCURRENCE_ROW_TYPE}">\n'
        f"    <files>\n      <location>{CORE_FILE}</location>\n    </files>\n"
        '    <id index="0"/>\n'
        f"{fields}\n"
        "  </core>\n"
        "</archive>\n"
    )


def occurrence_txt(records: Sequence[Mapping[str, str]], terms: Sequence[str] = TERMS) -> str:
    """The core file: a header of term names, then one tab-separated line per record."""
    lines = ["\t".join(terms), *("\t".join(record[t] for t in terms) for record in records)]
    return "\n".join(lines) + "\n"


def write_archive(
    output: str | os.PathLike,
    records: Sequence[Mapping[str, str]],
    eml: str,
    run_record: Mapping[str, Any],
    command: str,
) -> None:
    """Write the archive to ``output``: a zip when it ends in ``.zip`` (atomically), else a
    folder (replaced only when ``command`` wrote it; see :mod:`.output_folders`)."""
    files = {
        CORE_FILE: occurrence_txt(records),
        META_FILE: meta_xml(),
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
