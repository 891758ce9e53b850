"""Turning command-line inputs into the list of image paths to classify."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from moths_framework.images import IMAGE_SUFFIXES

__all__ = ["InputError", "collect_inputs"]


class InputError(ValueError):
    """An input list file cannot be read."""


def collect_inputs(specs: Iterable[str]) -> list[str]:
    """Image paths, in order, from files, directories and ``@list`` files.

    Args:
        specs: each one of

            - a file: taken as is (whatever its suffix; a missing file is kept
              and gets an error row, so the output has one row per input);
            - a directory: its image files (by suffix), searched recursively,
              sorted by path, hidden files and folders skipped (``.DS_Store``,
              macOS ``._*`` shadow files);
            - ``@list.txt``: one path per line; blank lines and ``#`` comments
              skipped; relative paths are relative to the list file's folder.

    Raises:
        InputError: a list file cannot be read.
    """
    paths: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            paths += _read_list(Path(spec[1:]))
        elif os.path.isdir(spec):
            paths += _images_under(spec)
        else:
            paths.append(spec)
    return paths


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise InputError(f"cannot read input list {path}: {error.strerror or error}") from error
    entries = [line.strip() for line in lines]
    return [
        os.path.join(path.parent, entry) if not os.path.isabs(entry) else entry
        for entry in entries
        if entry and not entry.startswith("#")
    ]


def _images_under(root: str) -> list[str]:
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found += [
            os.path.join(folder, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    # Sorting path parts (not the joined string) keeps a folder's files together.
    return sorted(found, key=lambda p: Path(p).parts)
