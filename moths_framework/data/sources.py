"""Data sources: where training images and their species names come from.

Plugin interface :class:`DataSource` (entry-point group
``moths_framework.data_sources``) and the built-ins ``image_folder``,
``image_folders`` and ``manifest``. No torch import.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from moths_framework.csv_cells import from_spreadsheet_safe
from moths_framework.csv_table import csv_table
from moths_framework.hierarchy import canonical_name
from moths_framework.images import IMAGE_SUFFIXES

__all__ = [
    "IMAGE_SUFFIXES",
    "DataSource",
    "DataSourceError",
    "ImageFolder",
    "ImageFolders",
    "Manifest",
    "Sample",
    "has_image_suffix",
    "species_name",
]


def has_image_suffix(name: str) -> bool:
    """Whether a file name ends in an image extension (any case): the one rule by which
    ``moths-prepare`` and the image-folder sources tell image files from other files."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


class DataSourceError(ValueError):
    """A data source cannot be read; the message names the path and what to do."""


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    ``identity`` names the image for the train/val/test split and must stay
    the same for the same image from run to run: a source that knows the
    image's content hash passes it (:class:`Manifest` passes its ``sha256``).
    Left ``None`` (the default, as for :class:`ImageFolder`), the split uses
    ``<species folder>/<file name>``, the path relative to the species
    folder's parent: stable as long as files are not renamed.
    """

    path: Path
    species: str
    identity: str | None = None

    @property
    def split_identity(self) -> str:
        """What the split hashes: :attr:`identity`, else ``<species folder>/<file name>``."""
        return self.identity or f"{self.path.parent.name}/{self.path.name}"


class DataSource(ABC):
    """Plugin interface for data sources.

    An implementation lists labelled images. It must be cheap to call more
    than once (the DataModule calls it once per run) and must return the
    samples in a deterministic order, so a seeded split is reproducible.
    """

    @abstractmethod
    def samples(self) -> list[Sample]:
        """Every (image path, species name) pair, in a deterministic order."""

    def species_counts(self) -> Counter[str]:
        """Images per species."""
        return Counter(s.species for s in self.samples())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def species_name(folder_name: str) -> str:
    """The species a folder name stands for.

    Stray whitespace is dropped, and the Unicode form is normalised (macOS
    writes NFD), so every spelling of one name is one species: the hierarchy's
    own rule (:func:`moths_framework.hierarchy.canonical_name`).
    """
    return canonical_name(folder_name)


def _visible(entry: os.DirEntry) -> bool:
    return not entry.name.startswith(".")


class ImageFolder(DataSource):
    """A folder in the seed's layout: ``root/<species>/<image>``.

    Hidden files and folders and non-image files are skipped, as are files
    directly under ``root``.

    Args:
        root: the folder, e.g. the ``image_folder`` written by ``moths-prepare``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def samples(self) -> list[Sample]:
        if not self.root.is_dir():
            raise DataSourceError(
                f"image folder {self.root} does not exist or is not a directory "
                "(expected <root>/<species>/<image>; moths-prepare writes one)"
            )
        found: list[Sample] = []
        with os.scandir(self.root) as species_dirs:
            for species_dir in sorted(species_dirs, key=lambda e: e.name):
                if _visible(species_dir) and species_dir.is_dir():
                    found.extend(self._images(species_dir))
        return found

    @staticmethod
    def _images(species_dir: os.DirEntry) -> list[Sample]:
        species = species_name(species_dir.name)
        with os.scandir(species_dir.path) as files:
            return [
                Sample(Path(f.path), species)
                for f in sorted(files, key=lambda e: e.name)
                if _visible(f) and has_image_suffix(f.name) and f.is_file()
            ]


class ImageFolders(DataSource):
    """Several image folders merged; the same species name in two roots is one class.

    Args:
        roots: folders in the seed's layout.
    """

    def __init__(self, roots: Sequence[str | Path]) -> None:
        if not roots:
            raise DataSourceError("image_folders needs at least one root folder")
        self.roots = [Path(r) for r in roots]

    def samples(self) -> list[Sample]:
        return [s for root in self.roots for s in ImageFolder(root).samples()]


class Manifest(DataSource):
    """The ``manifest.csv`` written by ``moths-prepare`` (columns ``path`` and ``species``).

    Relative paths are resolved against the manifest's folder. Species names
    are normalised as folder names are (:func:`species_name`). A cell that
    ``moths-prepare`` quoted for spreadsheets (``'=x``) reads as written (``=x``). Where the
    manifest has a ``sha256`` column, it is each sample's :attr:`Sample.identity`,
    so the split follows the image's content, not its path.

    Args:
        path: the manifest file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def samples(self) -> list[Sample]:
        if not self.path.is_file():
            raise DataSourceError(f"manifest {self.path} not found (moths-prepare writes one)")
        base = self.path.parent
        what = "a manifest CSV from moths-prepare"
        with csv_table(self.path, ("path", "species"), what, DataSourceError) as table:
            return [
                Sample(
                    base / from_spreadsheet_safe(row["path"]),
                    species_name(from_spreadsheet_safe(row["species"])),
                    row.get("sha256") or None,
                )
                for row in table.records()
            ]
