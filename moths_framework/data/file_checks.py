"""Check source image files in parallel, remembering results across runs.

A file is read once in a worker process: its bytes are hashed (sha256) and
decoded (:func:`moths_framework.images.check_image`). Results are cached under
(path, size, mtime_ns), so unchanged files are never read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from moths_framework.images import check_image

__all__ = ["FileCheck", "SourceFile", "check_files", "cpu_count", "load_checks", "save_checks"]

_CACHE_VERSION = 1


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute
    species: str
    size: int
    mtime_ns: int

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.path)[1].lower()


class FileCheck(NamedTuple):
    """One source file's check, as stored in the cache."""

    size: int
    mtime_ns: int
    ok: bool
    reason: str | None
    width: int
    height: int
    format: str | None
    sha256: str


def load_checks(path: Path) -> dict[str, FileCheck]:
    """The cached checks of an earlier run; empty when missing, damaged or outdated."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != _CACHE_VERSION:
            return {}
        return {name: FileCheck(*row) for name, row in data["files"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # a missing or damaged cache only costs a full check


def save_checks(checks: dict[str, FileCheck], files: list[SourceFile]) -> str:
    """The cache text holding the checks of ``files`` (checks of vanished files are dropped)."""
    kept = {f.path: list(checks[f.path]) for f in files if f.path in checks}
    return json.dumps({"version": _CACHE_VERSION, "files": kept}, ensure_ascii=False)


def check_files(
    files: list[SourceFile], records: dict[str, FileCheck], workers: int, progress: bool
) -> int:
    """Decode the files the cache does not vouch for; store results in ``records``."""
    todo = {}
    for file in files:
        cached = records.get(file.path)
        if cached is None or (cached.size, cached.mtime_ns) != (file.size, file.mtime_ns):
            todo[file.path] = file
    # The pool starts before tqdm, whose monitor thread would rule out a fast fork;
    # and no tqdm at all when hidden: a disabled one leaves that thread running.
    with _checked(list(todo), workers) as results:
        if progress and sys.stderr.isatty():
            results = tqdm(results, total=len(todo), desc="checking", unit="img")
        for path, fields in results:
            records[path] = FileCheck(todo[path].size, todo[path].mtime_ns, *fields)
    return len(todo)


@contextlib.contextmanager
def _checked(paths: list[str], workers: int) -> Iterator[Iterator[tuple[str, tuple]]]:
    """Check ``paths`` over a process pool, yielding results as they complete."""
    workers = min(workers, len(paths))
    if workers <= 1:
        yield map(_check_file, paths)
        return
    # Few big chunks keep IPC cheap; enough of them (16 per worker) to balance the load.
    chunksize = max(1, min(64, len(paths) // (workers * 16)))
    with _pool_context().Pool(workers) as pool:
        yield pool.imap_unordered(_check_file, paths, chunksize)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds and is safe while this process runs a
    # single thread; with more (a server, tqdm's monitor) a forked child could
    # inherit a lock held by another thread, so start clean ones instead.
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _check_file(path: str) -> tuple[str, tuple]:
    """Worker: read a file once, hash and validate the same bytes (paths in, no bytes out)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return path, (False, "unreadable", 0, 0, None, "")
    check = check_image(data, path)
    sha256 = hashlib.sha256(data).hexdigest()
    return path, (check.ok, check.reason, check.width, check.height, check.format, sha256)


def cpu_count() -> int:
    """Cores this process may use (``os.process_cpu_count`` exists from Python 3.13)."""
    if hasattr(os, "sched_getaffinity") and not hasattr(os, "process_cpu_count"):
        return len(os.sched_getaffinity(0))
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1
