"""Trap frames with boxes, read from COCO's ``instances.json`` (what CVAT, Label Studio
and FiftyOne export), checked before anything trains on them.

The COCO API itself (``faster_coco_eval.COCO``, a drop-in for pycocotools') indexes
the file; this module adds what the API does not check: every image file is there,
every size is positive, every box lies inside its image and names a declared
category. A file that breaks a rule raises :class:`CocoError`, one line naming the
file, the entry and what to fix. Frames without annotations are kept: negatives
teach a detector what is not a moth. No torch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from faster_coco_eval import COCO

from moths_framework.messages import first_few

__all__ = ["BOX_TOLERANCE", "CocoError", "CocoFrames", "Frame", "find_images_folder", "read_coco"]

# A box may reach this far (pixels) past its image's edge and is clipped to it: annotation
# tools round (CVAT writes 1919.9999, Label Studio converts from percentages).
BOX_TOLERANCE = 1.0
# Where exporters put the images, relative to the folder of the JSON file: beside it
# (Label Studio: file_name "images/x.jpg"), images/ (ours), data/ (FiftyOne), ../images/ (CVAT).
_IMAGE_FOLDERS = (".", "images", "data", "../images")
_ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox")


class CocoError(ValueError):
    """An ``instances.json`` that cannot be trained on; the message is one line."""


@dataclass(frozen=True)
class Frame:
    """One image of a COCO file and its boxes.

    ``boxes`` are ``(x1, y1, x2, y2)`` in pixels of the image as decoded (EXIF
    orientation applied, as annotation tools show it); ``category_ids`` are COCO's
    ids, ``species`` the ``attributes.species`` of each annotation (``None`` where absent).
    """

    image_id: int
    path: Path
    file_name: str
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    category_ids: tuple[int, ...] = ()
    species: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class CocoFrames:
    """A checked COCO file: its frames in image-id order and its categories.

    Attributes:
        path: the JSON file.
        images: the folder that ``file_name`` is relative to.
        categories: COCO category id -> name, in id order.
        frames: every image, with or without boxes.
        coco: the COCO API's index of the file, for ``COCOeval`` (mAP).
    """

    path: Path
    images: Path
    categories: dict[int, str]
    frames: list[Frame]
    coco: COCO

    def class_names(self) -> tuple[str, ...]:
        """Category names in id order: the detector's labels 1..N (0 is background)."""
        return tuple(self.categories.values())


def read_coco(path: str | Path, images: str | Path | None = None) -> CocoFrames:
    """Read and check a COCO detection file.

    Args:
        path: the ``instances.json`` (any name).
        images: the folder ``file_name`` is relative to; by default found beside
            the file (see :func:`find_images_folder`).

    Raises:
        CocoError: one line naming the file, the entry and the rule it breaks.
    """
    path = Path(path)
    data = _load(path)
    where = str(path)
    categories = _categories(data, where)
    images_by_id = _images(data, where)
    annotations = _annotations(data, where, images_by_id, categories)
    folder = Path(images) if images is not None else find_images_folder(path, images_by_id)
    _check_files(path, folder, images_by_id)
    coco = COCO(data)
    frames = [
        _frame(image, folder, annotations.get(image_id, []))
        for image_id, image in sorted(images_by_id.items())
    ]
    return CocoFrames(path, folder, categories, frames, coco)


def find_images_folder(path: Path, images_by_id: dict[int, dict]) -> Path:
    """The first of ``.``, ``images/``, ``data/``, ``../images/`` (relative to the folder of
    ``path``) that holds the first image's ``file_name``; ``.`` when none does."""
    base = path.parent
    if not images_by_id:
        return base
    first = images_by_id[min(images_by_id)]["file_name"]
    for folder in _IMAGE_FOLDERS:
        if (base / folder / first).is_file():
            return Path(os.path.normpath(base / folder))
    return base


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CocoError(f"{path} not found: give the COCO instances.json of your frames") from None
    except OSError as err:
        raise CocoError(f"{path} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise CocoError(f"{path} is not UTF-8 text: export the annotations as COCO JSON") from None
    except json.JSONDecodeError as err:
        raise CocoError(f"{path} is not JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise CocoError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise CocoError(f"{path}: no '{key}' list; is this a COCO detection file?")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        raise CocoError(f"{path}: 'annotations' must be a list")
    return data


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(where: str, key: str, n: int, entry: Any, fields: tuple[str, ...]) -> str:
    """``file: images[3] (id 7)``; raises unless ``entry`` is an object with ``fields``."""
    if not isinstance(entry, dict):
        raise CocoError(f"{where}: {key}[{n}] is not an object")
    name = f"{where}: {key}[{n}]" + (f" (id {entry['id']})" if "id" in entry else "")
    missing = [field for field in fields if field not in entry]
    if missing:
        raise CocoError(f"{name} has no {', '.join(missing)}")
    if not _integer(entry["id"]):
        raise CocoError(f"{name}: id must be an integer, got {entry['id']!r}")
    return name


def _categories(data: dict, where: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for n, category in enumerate(data["categories"]):
        name = _entry(where, "categories", n, category, ("id", "name"))
        if not isinstance(category["name"], str) or not category["name"].strip():
            raise CocoError(f"{name}: name must be a non-empty string")
        if category["id"] in found:
            raise CocoError(f"{name}: category id {category['id']} is declared twice")
        if category["name"] in found.values():
            raise CocoError(f"{name}: category name {category['name']!r} is declared twice")
        found[category["id"]] = category["name"]
    if not found:
        raise CocoError(f"{where}: 'categories' is empty; declare at least one (e.g. moth)")
    return dict(sorted(found.items()))


def _images(data: dict, where: str) -> dict[int, dict]:
    found: dict[int, dict] = {}
    names: set[str] = set()
    for n, image in enumerate(data["images"]):
        name = _entry(where, "images", n, image, ("id", "file_name", "width", "height"))
        file_name = image["file_name"]
        if not isinstance(file_name, str) or not file_name:
            raise CocoError(f"{name}: file_name must be a non-empty string")
        relative = PurePosixPath(file_name.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            raise CocoError(f"{name}: file_name {file_name!r} must lie inside the images folder")
        for side in ("width", "height"):
            if not _integer(image[side]) or image[side] <= 0:
                raise CocoError(f"{name}: {side} must be a positive integer, got {image[side]!r}")
        if image["id"] in found:
            raise CocoError(f"{name}: image id {image['id']} is used twice")
        if file_name in names:
            raise CocoError(f"{name}: file_name {file_name!r} is listed twice")
        names.add(file_name)
        found[image["id"]] = image
    return found


def _annotations(
    data: dict, where: str, images: dict[int, dict], categories: dict[int, str]
) -> dict[int, list[dict]]:
    """The boxes of each image id, crowd annotations left out; every rule checked."""
    by_image: dict[int, list[dict]] = {}
    ids: set[int] = set()
    for n, annotation in enumerate(data["annotations"]):
        name = _entry(where, "annotations", n, annotation, _ANNOTATION_FIELDS)
        if annotation["id"] in ids:
            raise CocoError(f"{name}: annotation id {annotation['id']} is used twice")
        ids.add(annotation["id"])
        image = images.get(annotation["image_id"])
        if image is None:
            raise CocoError(f"{name}: image_id {annotation['image_id']!r} is not in 'images'")
        if annotation["category_id"] not in categories:
            known = first_few([str(c) for c in categories])
            raise CocoError(
                f"{name}: category_id {annotation['category_id']!r} is not in 'categories' "
                f"(declared: {known})"
            )
        box = _box(name, annotation["bbox"], image)
        if annotation.get("iscrowd", 0):
            continue  # a crowd region is no single moth to learn a box from
        species = _species(name, annotation.get("attributes"))
        by_image.setdefault(image["id"], []).append(
            {"box": box, "category_id": annotation["category_id"], "species": species}
        )
    return by_image


def _box(name: str, bbox: Any, image: dict) -> tuple[float, float, float, float]:
    """COCO's ``[x, y, width, height]`` as ``(x1, y1, x2, y2)`` inside the image."""
    four = isinstance(bbox, list) and len(bbox) == 4
    if not four or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise CocoError(f"{name}: bbox must be [x, y, width, height], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise CocoError(f"{name}: bbox {bbox!r} holds a number that is not finite")
    if w <= 0 or h <= 0:
        raise CocoError(f"{name}: bbox {bbox!r} has a width or height that is not positive")
    width, height = image["width"], image["height"]
    t = BOX_TOLERANCE
    if x < -t or y < -t or x + w > width + t or y + h > height + t:
        raise CocoError(
            f"{name}: bbox {bbox!r} reaches outside its {width}x{height} image "
            f"{image['file_name']!r}; fix the box or the image's width and height"
        )
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        raise CocoError(f"{name}: bbox {bbox!r} lies on the edge of its image, holding nothing")
    return x1, y1, x2, y2


def _species(name: str, attributes: Any) -> str | None:
    if not isinstance(attributes, dict) or attributes.get("species") in (None, ""):
        return None
    species = attributes["species"]
    if not isinstance(species, str):
        raise CocoError(f"{name}: attributes.species must be a string, got {species!r}")
    return species.strip()


def _check_files(path: Path, folder: Path, images: dict[int, dict]) -> None:
    names = [image["file_name"] for image in images.values()]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise CocoError(
            f"{path}: {len(missing)} of {len(images)} image files are not in {folder}: "
            f"{first_few(missing, 3)}; give the images folder (images=...) or fix file_name"
        )


def _frame(image: dict, folder: Path, annotations: list[dict]) -> Frame:
    return Frame(
        image_id=image["id"],
        path=folder / image["file_name"],
        file_name=image["file_name"],
        width=image["width"],
        height=image["height"],
        boxes=tuple(a["box"] for a in annotations),
        category_ids=tuple(a["category_id"] for a in annotations),
        species=tuple(a["species"] for a in annotations),
    )
