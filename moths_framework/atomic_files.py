"""Atomic file writes: a reader sees the old file or the new one, never half of one.

No torch; usable from every command.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["write_bytes_atomically", "write_text_atomically"]


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a uniquely named temporary file and ``os.replace``.

    The temporary file sits next to ``path`` (same filesystem, so the rename is
    atomic), is named ``.<name>.<pid>.<random>.tmp`` so concurrent writers never
    share one, gets the mode a plain ``open`` would give (the umask applies),
    and is removed if writing fails.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    """:func:`write_bytes_atomically` for UTF-8 text."""
    write_bytes_atomically(path, text.encode("utf-8"))
