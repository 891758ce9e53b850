"""Prepare an image folder from source folders: validate, deduplicate, link, incrementally.

``prepare_sources(OUT, [source_a, source_b])`` reads ``<source>/<species>/<image>``
trees (only reads them) and writes in OUT: ``image_folder/<species>/<n><ext>``
symlinks to the absolute source files, numbered per species, ``<ext>`` the
source's extension in lower case; ``manifest.csv``; ``rejected.csv``; and
``.prepare-cache.json``, which keeps each file's check and sha256 under
(path, size, mtime_ns), so a re-run on unchanged sources only stats.
Links of unchanged files keep their numbers; new images get numbers after the
highest in use. Files are replaced atomically; links are read back from disk,
so an interrupted run leaves a state that the next run completes. A lock
(``OUT/.prepare.lock``) keeps a second run on the same OUT out until the first
is done. Files whose extension is not an image's are rejected unread
(``unsupported-extension``), as the image-folder sources would not see them.

Symbolic links: a file or species folder of a source that links to something
outside that source is skipped and listed in ``rejected.csv`` as
``symlink-outside-source`` unless ``follow_symlinks`` is set; a link into
``OUT/image_folder`` (or to OUT) is refused, set or not, since prepare never reads
its own output. ``OUT/image_folder`` and its species folders must be real folders,
so prepare never writes, nor removes, anything through a link.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from moths_framework.atomic_files import write_text_atomically
from moths_framework.csv_cells import spreadsheet_safe_row
from moths_framework.data.file_checks import (
    FileCheck,
    SourceFile,
    check_files,
    cpu_count,
    load_checks,
    save_checks,
)
from moths_framework.data.links import sync_links, visible_entries
from moths_framework.data.sources import has_image_suffix, species_name

__all__ = ["IMAGE_FOLDER", "LOCK", "PrepareBusyError", "PrepareError", "PrepareSummary",
           "prepare_sources"]  # fmt: skip

IMAGE_FOLDER = "image_folder"
MANIFEST = "manifest.csv"
REJECTED = "rejected.csv"
# JSON rather than sqlite: every run needs the whole table anyway, one
# os.replace makes it atomic, and it leaves no journal files next to it.
CACHE = ".prepare-cache.json"
# One run at a time per OUT; an OS lock (flock), so a killed run leaves none behind.
LOCK = ".prepare.lock"
_DUPLICATE, _CONFLICT = "duplicate-of:", "conflict:"
# Files whose extension is not in IMAGE_SUFFIXES: the image-folder sources would
# not see them, so prepare rejects them unread rather than link what no one reads.
UNSUPPORTED_EXTENSION = "unsupported-extension"
# A source's link whose target lies outside that source (read only with follow_symlinks).
SYMLINK_OUTSIDE_SOURCE = "symlink-outside-source"


class PrepareError(ValueError):
    """A user error: a missing source, or a source overlapping OUT. The message says which."""


class PrepareBusyError(PrepareError):
    """Another run is preparing the same OUT (and this one was not asked to wait)."""


@dataclass
class PrepareSummary:
    """What a :func:`prepare_sources` run did; the CLI prints it, tests assert on it."""

    image_folder: Path
    sources: int
    files: int  # files seen in the species folders (hidden ones excluded)
    kept: int
    species: int
    new: int  # links created by this run
    removed: int  # links removed by this run
    rejected: dict[str, int]  # broken files by reason (empty, truncated, ...)
    duplicates: int
    conflicts: int  # files whose bytes also appear under another species
    decoded: int  # files read and decoded by this run (the rest came from the cache)
    seconds: float


def prepare_sources(
    out: Path,
    sources: Sequence[Path],
    *,
    workers: int | None = None,
    progress: bool = True,
    wait: bool = False,
    follow_symlinks: bool = False,
) -> PrepareSummary:
    """Validate, deduplicate and link the images of several source folders into OUT.

    Args:
        out: the output folder (created if missing).
        sources: folders laid out as ``<source>/<species>/<image>``, in priority
            order: of byte-identical copies of one species, the first source's
            copy (then the first path) is kept.
        workers: decoding processes; default one per available CPU core.
        progress: show a progress bar on stderr (only when it is a terminal).
        wait: if another run holds OUT's lock (``OUT/.prepare.lock``), wait for
            it to finish instead of raising :class:`PrepareBusyError`.
        follow_symlinks: also read files and species folders that a source links
            to from outside itself (by default they are rejected as
            ``symlink-outside-source``).

    Returns:
        The counts of this run.

    Raises:
        PrepareError: a source is missing, not a directory, given twice, nested
            in another source, equal to OUT, inside OUT's image folder, or
            contains OUT; a source links into OUT's image folder; or that image
            folder or one of its species folders is a symbolic link.
        PrepareBusyError: another run is preparing OUT and ``wait`` is false.
    """
    start = time.perf_counter()
    out, roots = _resolve(Path(out), [Path(s) for s in sources])
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out, wait):
        return _prepare(out, roots, workers, progress, start, follow_symlinks)


@contextlib.contextmanager
def _locked(out: Path, wait: bool) -> Iterator[None]:
    """Hold OUT's lock for the whole run: two runs would renumber and overwrite each other."""
    lock = FileLock(out / LOCK, timeout=-1 if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise PrepareBusyError(
            f"another moths-prepare run is preparing {out} (it holds {out / LOCK}); "
            "try again when it has finished, or pass --wait to wait for it"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _prepare(
    out: Path, roots: list[Path], workers: int | None, progress: bool, start: float, follow: bool
) -> PrepareSummary:
    _check_image_folder(out / IMAGE_FOLDER)
    for name in (CACHE, MANIFEST, REJECTED):  # temporaries of a killed run: none in use now
        for stale in out.glob(f".{name}*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()
    files, unreadable = _scan(roots, out, follow)
    records = load_checks(out / CACHE)
    try:
        decoded = check_files(files, records, workers or cpu_count(), progress)
    finally:  # keep the work done so far, also when interrupted
        write_text_atomically(out / CACHE, save_checks(records, files))
    kept, rejected = _select(files, records)
    rejected.update(unreadable)
    links, new, removed = sync_links(out / IMAGE_FOLDER, kept)
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


def _check_image_folder(folder: Path) -> None:
    """Links are made and removed only in real folders: never through a link, out of OUT."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise PrepareError(
            f"{folder} is a symbolic link or not a folder: moths-prepare writes its links "
            "only into a real folder there; remove it"
        )
    for entry in visible_entries(folder) if folder.is_dir() else []:
        if entry.is_symlink():
            raise PrepareError(
                f"{entry.path} is a symbolic link: moths-prepare writes its links only into "
                "real species folders; remove it"
            )


def _link_check(entry: os.DirEntry, root: Path, out: Path, follow: bool) -> str | None:
    """Why a source's entry is not read (:data:`SYMLINK_OUTSIDE_SOURCE`), or None to read it.

    Raises:
        PrepareError: the entry links to OUT or into OUT's image folder.
    """
    if not entry.is_symlink():
        return None
    target = Path(os.path.realpath(entry.path))
    if target == out or target.is_relative_to(out / IMAGE_FOLDER):
        raise PrepareError(
            f"{entry.path} links to {target}, OUT or inside OUT/{IMAGE_FOLDER}: "
            "moths-prepare never reads its own output"
        )
    return None if follow or target.is_relative_to(root) else SYMLINK_OUTSIDE_SOURCE


def _scan(roots: list[Path], out: Path, follow: bool) -> tuple[list[SourceFile], dict[str, str]]:
    """List the image files in (source, species folder, file name) order; stats only.

    Returns the files to check and the files rejected unread: links out of their
    source (unless ``follow``; see :func:`_link_check`), those whose extension is
    not an image's (:func:`has_image_suffix`, the rule the image-folder sources
    apply too) and those that cannot be stat'ed.
    """
    files: list[SourceFile] = []
    rejected: dict[str, str] = {}
    for root in roots:
        for folder in visible_entries(root):
            species = species_name(folder.name)
            if not folder.is_dir() or not species or species.startswith("."):
                continue
            if reason := _link_check(folder, root, out, follow):
                rejected[folder.path] = reason
                continue
            for entry in visible_entries(folder.path):
                if entry.is_dir():
                    continue  # nested folders are not images of this species
                if reason := _link_check(entry, root, out, follow):
                    rejected[entry.path] = reason
                    continue
                if not has_image_suffix(entry.name):
                    rejected[entry.path] = UNSUPPORTED_EXTENSION
                    continue
                try:
                    stat = entry.stat()
                except OSError:  # e.g. a dangling symlink
                    rejected[entry.path] = "unreadable"
                    continue
                files.append(SourceFile(entry.path, species, stat.st_size, stat.st_mtime_ns))
    return files, rejected


def _select(
    files: list[SourceFile], records: dict[str, FileCheck]
) -> tuple[list[SourceFile], dict[str, str]]:
    """Keep one file per distinct image; reject broken files, duplicates and conflicts."""
    rejected: dict[str, str] = {}
    copies: dict[str, list[SourceFile]] = {}
    for file in files:  # scan order is (source order, path): the first copy wins
        record = records[file.path]
        if record.ok:
            copies.setdefault(record.sha256, []).append(file)
        else:
            rejected[file.path] = record.reason or "unreadable"
    kept: list[SourceFile] = []
    for same in copies.values():
        species = sorted({f.species for f in same})
        if len(species) > 1:  # one image, two labels: trust neither
            rejected.update((f.path, _CONFLICT + "|".join(species)) for f in same)
            continue
        kept.append(same[0])
        rejected.update((f.path, _DUPLICATE + same[0].path) for f in same[1:])
    return kept, rejected


def _write_outputs(
    out: Path,
    kept: list[SourceFile],
    links: dict[str, tuple[str, int, str]],
    records: dict[str, FileCheck],
    rejected: dict[str, str],
) -> None:
    rows = []
    for file in sorted(kept, key=lambda file: links[file.path][:2]):  # species, number
        record, (species, _, name) = records[file.path], links[file.path]
        path = f"{IMAGE_FOLDER}/{species}/{name}"
        rows.append((path, file.path, species, record.width, record.height, record.sha256))
    header = ("path", "source", "species", "width", "height", "sha256")
    write_text_atomically(out / MANIFEST, _csv_text(header, rows))
    write_text_atomically(out / REJECTED, _csv_text(("source", "reason"), sorted(rejected.items())))


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """CSV text; names and paths quoted against formula injection (see :mod:`.csv_cells`)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(map(spreadsheet_safe_row, rows))
    return text.getvalue()
