"""Crops saved as files: ``moths-infer --crops DIR``.

The crops go into a new folder beside ``DIR`` that replaces it when the run ends
without an exception, so a crashed run leaves the previous crops as they were.
``DIR`` is replaced only when it is missing, empty, or a crop folder the same
command made (:mod:`moths_framework.output_folders`). A crop's name says where
it came from: ``<frame number>_<frame name>_<detection number>.jpg``, the frame
numbered in input order (two frames named ``IMG_0001.jpg`` in two folders get
two numbers), the detection as in ``detections.csv``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import TracebackType
from typing import Self

from PIL import Image

from moths_framework.atomic_files import temporary_folder_beside
from moths_framework.output_folders import check_replaceable_folder, replace_folder

__all__ = ["CropFolder", "crop_name"]

JPEG_QUALITY = 95
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LONGEST_STEM = 60


def crop_name(frame_number: int, frame: str, detection: int) -> str:
    """``000012_IMG_0001_003.jpg``: frame 12 (``.../IMG_0001.jpg``), its third detection."""
    stem = _UNSAFE.sub("_", Path(frame).stem)[:_LONGEST_STEM] or "frame"
    return f"{frame_number:06d}_{stem}_{detection:03d}.jpg"


class CropFolder:
    """A crop folder being written. Use it as a context manager.

    Args:
        folder: the crop folder (``--crops``).
        command: who writes it, recorded in the folder (``moths-infer``).
        option: the option naming it, for messages.

    Raises:
        OutputFolderError: ``folder`` holds files this command did not write (nothing
            is changed); raised at construction, before any work.
    """

    def __init__(self, folder: str | os.PathLike, command: str, option: str = "--crops") -> None:
        self.folder = Path(folder)
        self.command = command
        self.option = option
        check_replaceable_folder(self.folder, command, option)
        self._staging: Path | None = None

    def __enter__(self) -> Self:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._staging = temporary_folder_beside(self.folder)
        return self

    def save(self, crop: Image.Image, frame_number: int, frame: str, detection: int) -> str:
        """Write one crop; returns its path as it will be once the run ends
        (``DIR/<name>``, ``DIR`` as given)."""
        name = crop_name(frame_number, frame, detection)
        crop.save(self._staging / name, quality=JPEG_QUALITY)
        return os.path.join(os.fspath(self.folder), name)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Put the crops in place when the block raised nothing; else drop them."""
        try:
            if kind is None:
                replace_folder(self._staging, self.folder, self.command, self.option)
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)  # still there: not renamed
