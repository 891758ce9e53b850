"""Write frames and their boxes as a COCO dataset: ``OUT/images/*.jpg`` and
``OUT/instances.json``, the layout CVAT, Label Studio and FiftyOne import.

The folder is written beside ``OUT`` and renamed into place when complete, so a
reader never sees half a dataset; an existing ``OUT`` is replaced only when this
command wrote it and it holds nothing else (:mod:`moths_framework.output_folders`).
No torch.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from moths_framework.atomic_files import temporary_folder_beside, write_text_atomically
from moths_framework.output_folders import check_replaceable_folder, replace_folder

__all__ = [
    "INSTANCES",
    "PastedMoth",
    "SynthFrame",
    "WrittenFrames",
    "coco_json",
    "write_coco_frames",
]

INSTANCES = "instances.json"
IMAGES = "images"


@dataclass(frozen=True)
class PastedMoth:
    """A moth on a frame: its box ``(x, y, width, height)`` in pixels, COCO's order,
    its species, and the crop it came from (relative to its source folder)."""

    box: tuple[int, int, int, int]
    species: str
    crop: str


@dataclass(frozen=True)
class SynthFrame:
    """Frame number ``index`` (from 0), its image and its moths."""

    index: int
    image: Image.Image
    moths: list[PastedMoth]


@dataclass
class WrittenFrames:
    """What :func:`write_coco_frames` wrote."""

    frames: int = 0
    empty: int = 0
    species: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def moths(self) -> int:
        return sum(self.species.values())


def write_coco_frames(
    out: str | Path,
    frames: Iterable[SynthFrame],
    categories: Sequence[str],
    *,
    command: str,
    by_species: bool = False,
    info: dict[str, Any] | None = None,
    total: int | None = None,
    progress: bool = True,
    jpeg_quality: int = 90,
) -> WrittenFrames:
    """Write ``frames`` to ``out`` as JPEGs and one ``instances.json``.

    Args:
        out: the dataset folder.
        frames: the frames, in order; frame ``i`` is ``images/<i+1 as 6 digits>.jpg``.
        categories: the category names, ids 1, 2, ...
        command: the command writing it, recorded in ``out``.
        by_species: each moth's category is its species (which ``categories`` must
            list); otherwise every moth is ``categories[0]``. Either way each
            annotation names its species in ``attributes``.
        info: COCO's ``info`` block.
        total: how many frames to expect, for the progress bar.
        progress: show a progress bar.
        jpeg_quality: JPEG quality of the frames.

    Raises:
        OutputFolderError: ``out`` exists and is not a dataset this command wrote.
    """
    out = Path(out)
    check_replaceable_folder(out, command, "OUT")
    out.parent.mkdir(parents=True, exist_ok=True)
    category_id = {name: n for n, name in enumerate(categories, start=1)}
    staging = temporary_folder_beside(out)
    written = WrittenFrames()
    started = time.perf_counter()
    try:
        (staging / IMAGES).mkdir()
        images, annotations = [], []
        for frame in tqdm(frames, total=total, unit="frame", disable=not progress):
            image_id = frame.index + 1
            file_name = f"{image_id:06d}.jpg"
            frame.image.save(staging / IMAGES / file_name, "JPEG", quality=jpeg_quality)
            images.append(
                {"id": image_id, "file_name": file_name,
                 "width": frame.image.width, "height": frame.image.height}
            )  # fmt: skip
            for moth in frame.moths:
                x, y, w, h = moth.box
                category = category_id[moth.species] if by_species else 1
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                     "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": [],
                     "attributes": {"species": moth.species, "crop": moth.crop}}
                )  # fmt: skip
                written.species[moth.species] += 1
            written.frames += 1
            written.empty += not frame.moths
        dataset = {
            "info": info or {},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": n, "name": name, "supercategory": "insect"}
                for name, n in category_id.items()
            ],
        }
        write_text_atomically(staging / INSTANCES, coco_json(dataset))
        replace_folder(staging, out, command, "OUT")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written.seconds = time.perf_counter() - started
    return written


def coco_json(dataset: dict[str, Any]) -> str:
    """``dataset`` as JSON with one image, annotation or category a line: a diff shows
    what changed, and a file of a million boxes stays a file a text editor opens."""
    parts = []
    for key, value in dataset.items():
        if isinstance(value, list) and value:
            items = ",\n".join(" " + json.dumps(item, ensure_ascii=False) for item in value)
            parts.append(f"{json.dumps(key)}: [\n{items}\n]")
        else:
            parts.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"
