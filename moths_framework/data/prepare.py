"""Prepare an image folder from source folders: validate, deduplicate, link, incrementally.

``prepare_sources(OUT, [source_a, source_b])`` reads ``<source>/<species>/<image>``
trees (only reads them) and writes in OUT: ``image_folder/<species>/<n><ext>``
symlinks to the absolute source files, numbered per species, ``<ext>`` the
source's extension in lower case; ``manifest.csv``; ``rejected.csv``; and
``.prepare-cache.json``, which keeps each file's check and sha256 under
(path, size, mtime_ns), so a re-run on unchanged sources only stats.
Links of unchanged files keep their numbers; new images get numbers after the
highest in use. Files are replaced atomically; links are read back from disk,
so an interrupted run leaves a state that the next run completes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import multiprocessing
import os
import re
import sys
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from moths_framework.images import check_image

__all__ = ["IMAGE_FOLDER", "PrepareError", "PrepareSummary", "prepare_sources"]

IMAGE_FOLDER = "image_folder"
MANIFEST = "manifest.csv"
REJECTED = "rejected.csv"
# JSON rather than sqlite: every run needs the whole table anyway, one
# os.replace makes it atomic, and it leaves no journal files next to it.
CACHE = ".prepare-cache.json"
_CACHE_VERSION = 1
_DUPLICATE, _CONFLICT = "duplicate-of:", "conflict:"


class PrepareError(ValueError):
    """A user error: a missing source, or a source overlapping OUT. The message says which."""


@dataclass
class PrepareSummary:
    """What a :func:`prepare_sources` run did; the CLI prints it, tests assert on it."""

    image_folder: Path
    sources: int
    files: int  # image files seen in the sources (hidden ones excluded)
    kept: int
    species: int
    new: int  # links created by this run
    removed: int  # links removed by this run
    rejected: dict[str, int]  # broken files by reason (empty, truncated, ...)
    duplicates: int
    conflicts: int  # files whose bytes also appear under another species
    decoded: int  # files read and decoded by this run (the rest came from the cache)
    seconds: float


class _Record(NamedTuple):
    """One source file's check, as stored in the cache."""

    size: int
    mtime_ns: int
    ok: bool
    reason: str | None
    width: int
    height: int
    format: str | None
    sha256: str


@dataclass(frozen=True)
class _SourceFile:
    path: str  # absolute
    species: str
    size: int
    mtime_ns: int

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.path)[1].lower()


def prepare_sources(
    out: Path, sources: Sequence[Path], *, workers: int | None = None, progress: bool = True
) -> PrepareSummary:
    """Validate, deduplicate and link the images of several source folders into OUT.

    Args:
        out: the output folder (created if missing).
        sources: folders laid out as ``<source>/<species>/<image>``, in priority
            order: of byte-identical copies of one species, the first source's
            copy (then the first path) is kept.
        workers: decoding processes; default one per available CPU core.
        progress: show a progress bar on stderr (only when it is a terminal).

    Returns:
        The counts of this run.

    Raises:
        PrepareError: a source is missing, not a directory, given twice, nested
            in another source, equal to OUT, inside OUT's image folder, or
            contains OUT.
    """
    start = time.perf_counter()
    out, roots = _resolve(Path(out), [Path(s) for s in sources])
    files, unreadable = _scan(roots)
    out.mkdir(parents=True, exist_ok=True)
    records = _load_cache(out / CACHE)
    try:
        decoded = _check(files, records, workers or _cpu_count(), progress)
    finally:  # keep the work done so far, also when interrupted
        records = {f.path: records[f.path] for f in files if f.path in records}
        cache = {"version": _CACHE_VERSION, "files": {k: list(v) for k, v in records.items()}}
        _write_atomically(out / CACHE, json.dumps(cache, ensure_ascii=False))
    kept, rejected = _select(files, records)
    rejected.update(unreadable)
    links, new, removed = _sync_links(out / IMAGE_FOLDER, kept)
    _write_outputs(out, kept, links, records, rejected)
    reasons = Counter(r for r in rejected.values() if not r.startswith((_DUPLICATE, _CONFLICT)))
    return PrepareSummary(
        image_folder=out / IMAGE_FOLDER,
        sources=len(roots),
        files=len(files) + len(unreadable),
        kept=len(kept),
        species=len({f.species for f in kept}),
        new=new,
        removed=removed,
        rejected=dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        duplicates=sum(r.startswith(_DUPLICATE) for r in rejected.values()),
        conflicts=sum(r.startswith(_CONFLICT) for r in rejected.values()),
        decoded=decoded,
        seconds=time.perf_counter() - start,
    )


def _resolve(out: Path, sources: list[Path]) -> tuple[Path, list[Path]]:
    if not sources:
        raise PrepareError("no source folder given")
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise PrepareError(f"output {out} exists and is not a directory")
    image_folder = out / IMAGE_FOLDER
    roots: list[Path] = []
    for given in sources:
        root = given.resolve()
        if not root.is_dir():
            raise PrepareError(f"source {given} does not exist or is not a directory")
        if root == out or root.is_relative_to(image_folder):
            raise PrepareError(f"source {given} is OUT or inside OUT/{IMAGE_FOLDER}")
        if out.is_relative_to(root):
            raise PrepareError(f"output {out} is inside source {given}: sources are read-only")
        for other in roots:
            if root.is_relative_to(other) or other.is_relative_to(root):
                raise PrepareError(f"sources {other} and {root} overlap (or are the same)")
        roots.append(root)
    return out, roots


def _visible(folder: str | Path) -> list[os.DirEntry]:
    """Entries of a folder in natural name order (2.jpg before 10.jpg), without dot names."""
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=_natural)


def _natural(entry: os.DirEntry) -> tuple:
    # re.split with a group alternates text and digits, so ints only meet ints.
    parts = re.split(r"(\d+)", entry.name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), entry.name


def _scan(roots: list[Path]) -> tuple[list[_SourceFile], dict[str, str]]:
    """List the image files in (source, species folder, file name) order; stats only."""
    files: list[_SourceFile] = []
    unreadable: dict[str, str] = {}
    for root in roots:
        for folder in _visible(root):
            # Species folder names may carry stray whitespace and either Unicode
            # form (macOS writes NFD): normalise so both spell one species.
            species = unicodedata.normalize("NFC", folder.name.strip())
            if not folder.is_dir() or not species or species.startswith("."):
                continue
            for entry in _visible(folder.path):
                if entry.is_dir():
                    continue  # nested folders are not images of this species
                try:
                    stat = entry.stat()
                except OSError:  # e.g. a dangling symlink
                    unreadable[entry.path] = "unreadable"
                    continue
                files.append(_SourceFile(entry.path, species, stat.st_size, stat.st_mtime_ns))
    return files, unreadable


def _load_cache(path: Path) -> dict[str, _Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != _CACHE_VERSION:
            return {}
        return {name: _Record(*row) for name, row in data["files"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # a missing or damaged cache only costs a full check


def _check(
    files: list[_SourceFile], records: dict[str, _Record], workers: int, progress: bool
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
            records[path] = _Record(todo[path].size, todo[path].mtime_ns, *fields)
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


def _select(
    files: list[_SourceFile], records: dict[str, _Record]
) -> tuple[list[_SourceFile], dict[str, str]]:
    """Keep one file per distinct image; reject broken files, duplicates and conflicts."""
    rejected: dict[str, str] = {}
    copies: dict[str, list[_SourceFile]] = {}
    for file in files:  # scan order is (source order, path): the first copy wins
        record = records[file.path]
        if record.ok:
            copies.setdefault(record.sha256, []).append(file)
        else:
            rejected[file.path] = record.reason or "unreadable"
    kept: list[_SourceFile] = []
    for same in copies.values():
        species = sorted({f.species for f in same})
        if len(species) > 1:  # one image, two labels: trust neither
            rejected.update((f.path, _CONFLICT + "|".join(species)) for f in same)
            continue
        kept.append(same[0])
        rejected.update((f.path, _DUPLICATE + same[0].path) for f in same[1:])
    return kept, rejected


def _sync_links(
    folder: Path, kept: list[_SourceFile]
) -> tuple[dict[str, tuple[str, int, str]], int, int]:
    """Make ``folder`` hold exactly one link per kept file; existing links keep their names.

    Returns:
        (source path -> (species, number, link name), links created, links removed)
    """
    wanted = {file.path: file for file in kept}
    links: dict[str, tuple[str, int, str]] = {}
    highest: Counter[str] = Counter()  # species -> highest number in use
    new = removed = 0
    for species, number, name, target in _existing_links(folder):
        highest[species] = max(highest[species], number)
        if target is None:
            continue  # not a link: not ours to touch
        file = wanted.get(target)
        same = file and file.species == species and name == f"{number}{file.suffix}"
        if same and target not in links:
            links[target] = (species, number, name)
            continue
        (folder / species / name).unlink()  # stale: source gone or rejected, or a 2nd link
        removed += 1
    for file in kept:  # scan order, so new numbers follow (source order, path)
        if file.path not in links:
            number = highest[file.species] = highest[file.species] + 1
            name = f"{number}{file.suffix}"
            (folder / file.species).mkdir(parents=True, exist_ok=True)
            os.symlink(file.path, folder / file.species / name)
            links[file.path] = (file.species, number, name)
            new += 1
    _remove_empty_folders(folder)
    return links, new, removed


def _existing_links(folder: Path) -> list[tuple[str, int, str, str | None]]:
    """(species, number, name, link target or None) of each numbered entry, in order."""
    found = []
    species_folders = _visible(folder) if folder.is_dir() else []
    for species in (e for e in species_folders if e.is_dir(follow_symlinks=False)):
        for entry in _visible(species.path):
            number = entry.name.split(".", 1)[0]
            if number.isascii() and number.isdigit():
                target = os.readlink(entry.path) if entry.is_symlink() else None
                found.append((species.name, int(number), entry.name, target))
    return sorted(found)


def _remove_empty_folders(folder: Path) -> None:
    # A species folder without images would read as a class with no samples.
    for species in _visible(folder) if folder.is_dir() else []:
        if species.is_dir(follow_symlinks=False) and not any(os.scandir(species.path)):
            os.rmdir(species.path)


def _write_outputs(
    out: Path,
    kept: list[_SourceFile],
    links: dict[str, tuple[str, int, str]],
    records: dict[str, _Record],
    rejected: dict[str, str],
) -> None:
    rows = []
    for file in sorted(kept, key=lambda file: links[file.path][:2]):  # species, number
        record, (species, _, name) = records[file.path], links[file.path]
        path = f"{IMAGE_FOLDER}/{species}/{name}"
        rows.append((path, file.path, species, record.width, record.height, record.sha256))
    header = ("path", "source", "species", "width", "height", "sha256")
    _write_atomically(out / MANIFEST, _csv_text(header, rows))
    _write_atomically(out / REJECTED, _csv_text(("source", "reason"), sorted(rejected.items())))


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and ``os.replace``: readers see the old or the new file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _cpu_count() -> int:
    """Cores this process may use (``os.process_cpu_count`` exists from Python 3.13)."""
    if hasattr(os, "sched_getaffinity") and not hasattr(os, "process_cpu_count"):
        return len(os.sched_getaffinity(0))
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1
