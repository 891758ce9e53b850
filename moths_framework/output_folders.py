"""What a command may replace or overwrite: only what it wrote itself.

A folder a command makes, or writes files into, holds ``.moths-output.json``:
which command made the folder (if one did) and which command wrote each entry
in it. With that record a command

- replaces a whole folder (``moths-predict``) only when it made that folder and
  every entry in it is one a moths command recorded there (``moths-evaluate``
  writes its metrics into a prediction folder); an empty folder may be used;
- overwrites a file (``moths-infer``, ``moths-evaluate``, ``moths-sweep``;
  ``moths-export`` and ``moths-calibrate`` with ``--force``) only when it wrote
  that file itself;
- writes a run into a folder made new for it (``runs/<time>``, then ``-2``,
  ``-3`` ... when another run started in the same second), into an empty one,
  or into one that command made (a resumed run).

Anything else is an :class:`OutputFolderError`: one line naming the path, why,
and what to do, with nothing changed. No torch.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from moths_framework.atomic_files import temporary_name, write_text_atomically

__all__ = [
    "MARKER",
    "OutputFolderError",
    "check_may_overwrite",
    "check_replaceable_folder",
    "claim_run_folder",
    "create_run_folder",
    "record_written",
    "replace_folder",
]

MARKER = ".moths-output.json"
_NOTE = "written by moths-framework: a command replaces or overwrites only what it wrote"

log = logging.getLogger(__name__)


class OutputFolderError(ValueError):
    """An output a command must not replace or overwrite; the message is one line."""


def check_replaceable_folder(folder: str | Path, command: str, option: str = "--output") -> None:
    """Raise unless ``folder`` is missing, empty, or a folder ``command`` made that holds
    nothing but entries moths commands recorded.

    Raises:
        OutputFolderError: naming the folder and the first entry ``command`` did not write.
    """
    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise OutputFolderError(
            f"{folder} exists and is not a folder {command} wrote; choose another {option}"
        )
    entries = _entries(folder)
    record = _read_record(folder)
    if entries and record["made_by"] != command:
        raise OutputFolderError(
            f"{folder} is not a folder {command} wrote (no {MARKER} of it) and holds "
            f"{_some(entries)}; {command} replaces only its own folders: choose another "
            f"{option}, or empty the folder yourself"
        )
    unknown = [entry for entry in entries if entry not in record["files"]]
    if unknown:
        raise OutputFolderError(
            f"{folder} holds {_some(unknown)}, which {command} did not write; it replaces only "
            f"a folder holding nothing else: choose another {option}, or move that away yourself"
        )


def replace_folder(
    staging: str | Path, folder: str | Path, command: str, option: str = "--output"
) -> None:
    """Record everything in ``staging`` as written by ``command`` and rename it to ``folder``.

    An old ``folder`` (checked again with :func:`check_replaceable_folder`) is
    moved aside under a unique name, then what moths commands wrote of it is
    removed; anything else found there by then is kept, with a warning.
    """
    staging, folder = Path(staging), Path(folder)
    _write_record(staging, command, dict.fromkeys(_entries(staging), command))
    if not os.path.lexists(folder):
        os.rename(staging, folder)
        return
    check_replaceable_folder(folder, command, option)
    aside = temporary_name(folder, "old")
    os.rename(folder, aside)
    try:
        os.rename(staging, folder)
    except OSError:
        os.rename(aside, folder)
        raise
    _remove_written(aside)


def check_may_overwrite(
    folder: str | Path, names: Iterable[str], command: str, option: str = "--output"
) -> None:
    """Raise for the first of ``names`` (paths relative to ``folder``) that exists and
    that ``command`` did not write, as recorded in ``folder``.

    Raises:
        OutputFolderError: naming the file.
    """
    folder = Path(folder)
    files = _read_record(folder)["files"]
    for name in names:
        path = folder / name
        if os.path.lexists(path) and files.get(Path(name).as_posix()) != command:
            raise OutputFolderError(
                f"{path} exists and {command} did not write it; it overwrites only its own "
                f"files: choose another {option}, or move the file away yourself"
            )


def record_written(folder: str | Path, names: Iterable[str], command: str) -> None:
    """Record ``names`` (paths relative to ``folder``) as written by ``command``."""
    folder = Path(folder)
    record = _read_record(folder)
    files = record["files"] | {Path(name).as_posix(): command for name in names}
    _write_record(folder, record["made_by"], files)


def create_run_folder(path: str | Path, command: str) -> Path:
    """Make a new folder at ``path``, or at ``path-2``, ``path-3`` ... when that is taken
    (two runs started in the same second never share one); ``command`` made it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        candidate = path if number == 1 else path.with_name(f"{path.name}-{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        _write_record(candidate, command, {})
        return candidate


def claim_run_folder(path: str | Path, command: str, option: str) -> None:
    """Let ``command`` write a run into ``path``: made when missing; an existing folder
    must be empty or one ``command`` made (a resumed run writes into its own folder).

    Raises:
        OutputFolderError: ``path`` is a file, or a folder with entries ``command`` did not make.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise OutputFolderError(f"{option} {path} is a file; name a folder") from None
        if _read_record(path)["made_by"] == command:
            return
        entries = _entries(path)
        if entries:
            raise OutputFolderError(
                f"{option} {path} is not a run folder {command} made (no {MARKER} of it) and "
                f"holds {_some(entries)}; name a new or empty folder, or leave the option out "
                "for a new runs/<time>"
            ) from None
    _write_record(path, command, {})


def _some(entries: list[str], shown: int = 3) -> str:
    """``'a', 'b', 'c' and 4 more``: enough names to recognise, one line."""
    names = ", ".join(repr(entry) for entry in entries[:shown])
    return names + (f" and {len(entries) - shown} more" if len(entries) > shown else "")


def _entries(folder: Path) -> list[str]:
    """Every file, link and folder under ``folder`` (links are not followed), as sorted
    relative POSIX paths, the record itself left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        found += [(base / name).as_posix() for name in [*dirs, *files]]
    return sorted(entry for entry in found if entry != MARKER)


def _read_record(folder: Path) -> dict:
    """``{"made_by": command or None, "files": {relative path: command}}``; a missing or
    unreadable record is an empty one (nothing in the folder is then ours)."""
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        return {"made_by": None, "files": {}}
    made_by = record.get("made_by")
    return {
        "made_by": made_by if isinstance(made_by, str) else None,
        "files": {str(name): str(command) for name, command in files.items()},
    }


def _write_record(folder: Path, made_by: str | None, files: dict[str, str]) -> None:
    record = {"note": _NOTE, "made_by": made_by, "files": dict(sorted(files.items()))}
    write_text_atomically(folder / MARKER, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def _remove_written(folder: Path) -> None:
    """Remove what moths commands recorded in ``folder`` (deepest first), then the folder."""
    written = _read_record(folder)["files"]
    for entry in sorted(_entries(folder), reverse=True):  # a folder's entries come before it
        path = folder / entry
        if entry not in written:
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # only when empty: it may hold something no command wrote
            else:
                path.unlink()
        except OSError:
            pass
    (folder / MARKER).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        log.warning("kept %s: it holds files no moths command wrote", folder)
