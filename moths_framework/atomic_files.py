"""Atomic file writes: a reader sees the old file or the new one, never half of one.

No torch; usable from every command.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "replaced_atomically",
    "temporary_folder_beside",
    "temporary_name",
    "write_bytes_atomically",
    "write_csv_atomically",
    "write_text_atomically",
]


def temporary_name(path: str | Path, kind: str = "tmp") -> Path:
    """A name next to ``path`` that no other writer uses: ``.<name>.<pid>.<random>.<kind>``.

    The PID alone is not unique (in a container every run is PID 1), so a
    temporary left by a killed run would otherwise break every later run.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.{kind}")


def temporary_folder_beside(path: str | Path) -> Path:
    """A new, empty folder next to ``path`` with a name no other writer uses, made with
    the mode a plain ``mkdir`` gives (the umask applies; ``tempfile.mkdtemp`` gives 0700,
    which would stay on a folder renamed into place)."""
    while True:
        folder = temporary_name(path)
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; it replaces ``path`` on success.

    For files a library writes itself (``onnx.save``, ``safetensors``). The
    temporary file sits next to ``path`` (same filesystem, so the rename is
    atomic), is named ``.<name>.<pid>.<random>.tmp`` so concurrent writers never
    share one, and is removed if the block raises. The file gets the mode a plain
    ``open`` gives (the umask applies), whatever mode the library wrote it with.
    """
    path = Path(path)
    temporary = temporary_name(path)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    mode = temporary.stat().st_mode & 0o777  # 0o666 less the umask
    try:
        yield temporary
        os.chmod(temporary, mode)  # a library may have written it private (safetensors: 0600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new file
    (see :func:`replaced_atomically`)."""
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomically(path: str | Path, text: str) -> None:
    """:func:`write_bytes_atomically` for UTF-8 text."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_csv_atomically(
    path: str | Path, header: Sequence[object], rows: Iterable[Sequence[object]]
) -> None:
    """Write a CSV file (UTF-8, ``header`` then ``rows``) so that a reader sees the old
    or the new file (see :func:`replaced_atomically`). Cells are written as given: make
    text cells spreadsheet-safe first (``moths_framework.csv_cells``)."""
    with replaced_atomically(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows(rows)
