"""Keep an image folder of symbolic links in step with the kept source files.

``<folder>/<species>/<n><ext>`` links to a source file; links of unchanged
files keep their numbers, new files get numbers after the highest in use, and
links whose source is gone or rejected are removed. Only links this module
made are ever removed: symbolic links to an absolute path, named ``<n><ext>``, in
a species folder that is a real folder (``moths-prepare`` refuses an image folder
or species folder that is itself a link). Anything else there is left alone.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from moths_framework.data.file_checks import SourceFile

__all__ = ["sync_links", "visible_entries"]


def visible_entries(folder: str | Path) -> list[os.DirEntry]:
    """Entries of a folder in natural name order (2.jpg before 10.jpg), without dot names."""
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if not e.name.startswith(".")), key=_natural)


def _natural(entry: os.DirEntry) -> tuple:
    # re.split with a group alternates text and digits, so ints only meet ints.
    parts = re.split(r"(\d+)", entry.name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), entry.name


def sync_links(
    folder: Path, kept: list[SourceFile]
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
        if target is None or not os.path.isabs(target):
            continue  # not a link, or a relative one: not made here, not ours to touch
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
    species_folders = visible_entries(folder) if folder.is_dir() else []
    for species in (e for e in species_folders if e.is_dir(follow_symlinks=False)):
        for entry in visible_entries(species.path):
            number = entry.name.split(".", 1)[0]
            if number.isascii() and number.isdigit():
                target = os.readlink(entry.path) if entry.is_symlink() else None
                found.append((species.name, int(number), entry.name, target))
    return sorted(found)


def _remove_empty_folders(folder: Path) -> None:
    # A species folder without images would read as a class with no samples.
    for species in visible_entries(folder) if folder.is_dir() else []:
        if species.is_dir(follow_symlinks=False) and not any(os.scandir(species.path)):
            os.rmdir(species.path)
