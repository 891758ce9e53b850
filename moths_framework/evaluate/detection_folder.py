"""The detection folder: what ``moths-predict`` writes for a detector, ``moths-evaluate`` reads.

A folder holds, for F frames in one order:

- ``detections.csv``: one row per box the detector returned, those under the
  score threshold included: ``frame, width, height, x1, y1, x2, y2, score, label,
  class, kept, error`` (``kept``: the score reaches the threshold). A frame with
  no box gets one row with empty box cells, a broken frame one row with ``error``:
  every frame is counted, none is lost;
- ``ground_truth.json``: the true boxes as a COCO dataset (images ``id`` 1..F in
  order, ``file_name`` the frame's path; annotations ``bbox`` ``[x, y, w, h]``;
  categories ``id`` 1..N named by the classes);
- ``detections.json``: the predicted boxes as a COCO results list
  (``image_id, category_id, bbox, score``), for any COCO tool;
- ``detection.json``: ``{"task": "detection", "classes": [...],
  "score_threshold": t, ...metadata}``;
- ``.moths-output.json``: the record that ``moths-predict`` made the folder
  (see :mod:`moths_framework.output_folders`).

Reading back takes the predictions from ``detections.csv`` (boxes and scores
written with float32's shortest round-trip digits) and the truth from
``ground_truth.json``. No torch: numpy and the standard library.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moths_framework.atomic_files import temporary_folder_beside
from moths_framework.csv_cells import from_spreadsheet_safe, spreadsheet_safe
from moths_framework.csv_table import csv_table
from moths_framework.evaluate.folder_writer import PREDICTION_FOLDER_MAKER
from moths_framework.output_folders import check_replaceable_folder, replace_folder

__all__ = [
    "DETECTIONS_CSV",
    "DETECTIONS_JSON",
    "DETECTION_CSV_COLUMNS",
    "DETECTION_JSON",
    "GROUND_TRUTH_JSON",
    "DetectionFolder",
    "DetectionFolderError",
    "FrameBoxes",
    "is_detection_folder",
    "read_detection_folder",
    "write_detection_folder",
]

DETECTIONS_CSV = "detections.csv"
DETECTIONS_JSON = "detections.json"
GROUND_TRUTH_JSON = "ground_truth.json"
DETECTION_JSON = "detection.json"
DETECTION_CSV_COLUMNS = (
    "frame", "width", "height", "x1", "y1", "x2", "y2", "score", "label", "class", "kept", "error",
)  # fmt: skip
_TEXT_COLUMNS = ("frame", "class", "error")  # quoted against formulas; the rest are numbers


class DetectionFolderError(ValueError):
    """A detection folder is missing, unreadable or inconsistent; the message names the file."""


@dataclass(frozen=True)
class FrameBoxes:
    """The boxes of one frame: ground truth (``scores`` is ``None``) or predicted.

    Attributes:
        path: the frame's path as the data source gives it.
        width, height: the displayed size (EXIF orientation applied), pixels.
        boxes: float32 [K, 4], ``x1 y1 x2 y2`` in that frame's pixels.
        labels: int64 [K], 1..N (label ``k`` names ``classes[k - 1]``).
        scores: float32 [K] for predictions (highest first); ``None`` for ground truth.
        error: non-empty when the frame could not be read (it then has no boxes).
    """

    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    error: str = ""


@dataclass(frozen=True)
class DetectionFolder:
    """A detection folder read back: frames in file order, truth and predictions side by side.

    Attributes:
        path: the folder.
        classes: class names; label ``k`` names ``classes[k - 1]``.
        score_threshold: the detector's chosen cut (boxes at or above it are ``kept``).
        truth: the true boxes per frame.
        predicted: every predicted box per frame, scores highest first.
        metadata: the rest of ``detection.json`` (checkpoint, split, detector ...).
    """

    path: Path
    classes: tuple[str, ...]
    score_threshold: float
    truth: tuple[FrameBoxes, ...]
    predicted: tuple[FrameBoxes, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.truth)

    @property
    def errors(self) -> list[str]:
        """Per frame, why it could not be read (``""`` where it was)."""
        return [p.error or t.error for t, p in zip(self.truth, self.predicted, strict=True)]


def write_detection_folder(
    out: str | Path,
    classes: Sequence[str],
    truth: Sequence[FrameBoxes],
    predicted: Sequence[FrameBoxes],
    *,
    score_threshold: float,
    metadata: Mapping[str, Any],
) -> Path:
    """Write a detection folder, replacing ``out`` only once it is complete.

    Args:
        out: the folder. If it exists it must be empty, or a folder moths-predict
            made holding nothing but what moths commands wrote; it is swapped for
            the new one at the end.
        classes: class names; label ``k`` names ``classes[k - 1]``.
        truth: the true boxes per frame (``scores`` ``None``).
        predicted: the detector's boxes for the same frames in the same order, all
            of them (those under ``score_threshold`` too), with scores.
        score_threshold: the detector's chosen cut, used for ``kept``, precision,
            recall and counts.
        metadata: more keys for ``detection.json`` (checkpoint, split, detector).

    Returns:
        ``out`` as a Path.

    Raises:
        OutputFolderError: ``out`` is something other than a folder moths-predict wrote.
        ValueError: frames that do not pair up, bad shapes, a label outside 1..N.
    """
    out = Path(out)
    classes = [str(name) for name in classes]
    _check_frames(classes, truth, predicted)
    reserved = {"task", "classes", "score_threshold"} & set(metadata)
    if reserved:
        raise ValueError(f"metadata may not set {', '.join(sorted(reserved))}")
    description = {
        "task": "detection",
        "classes": classes,
        "score_threshold": float(score_threshold),
        **metadata,
    }
    check_replaceable_folder(out, PREDICTION_FOLDER_MAKER)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_folder_beside(out)
    try:
        _write_csv(staging / DETECTIONS_CSV, classes, truth, predicted, float(score_threshold))
        _write_json(staging / GROUND_TRUTH_JSON, _coco_dataset(classes, truth))
        _write_json(staging / DETECTIONS_JSON, _coco_results(predicted))
        _write_json(staging / DETECTION_JSON, description)
        replace_folder(staging, out, PREDICTION_FOLDER_MAKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def is_detection_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a ``detection.json`` naming the task ``detection``."""
    try:
        description = json.loads((Path(path) / DETECTION_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(description, dict) and description.get("task") == "detection"


def read_detection_folder(path: str | Path) -> DetectionFolder:
    """Read a folder written by :func:`write_detection_folder`.

    Raises:
        DetectionFolderError: the folder or one of its files is missing, unreadable,
            or disagrees with the others.
    """
    folder = Path(path)
    for name in (DETECTION_JSON, GROUND_TRUTH_JSON, DETECTIONS_CSV):
        if not (folder / name).is_file():
            raise DetectionFolderError(
                f"{folder}: missing {name}; is this a detection folder written by moths-predict?"
            )
    description = _read_json(folder / DETECTION_JSON)
    try:
        classes = tuple(str(name) for name in description["classes"])
        threshold = float(description["score_threshold"])
    except (KeyError, TypeError, ValueError):
        raise DetectionFolderError(
            f"{folder / DETECTION_JSON}: needs classes and score_threshold"
        ) from None
    truth = _truth_from_coco(folder / GROUND_TRUTH_JSON, len(classes))
    predicted = _predicted_from_csv(folder / DETECTIONS_CSV, truth, len(classes))
    metadata = {k: v for k, v in description.items() if k not in ("classes", "score_threshold")}
    return DetectionFolder(folder, classes, threshold, tuple(truth), tuple(predicted), metadata)


def _check_frames(
    classes: Sequence[str], truth: Sequence[FrameBoxes], predicted: Sequence[FrameBoxes]
) -> None:
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true frames but {len(predicted)} predicted ones")
    for t, p in zip(truth, predicted, strict=True):
        if str(t.path) != str(p.path):
            raise ValueError(f"frames out of order: truth {t.path!r}, predicted {p.path!r}")
        for frame, scored in ((t, False), (p, True)):
            k = len(frame.labels)
            if np.shape(frame.boxes) != (k, 4):
                raise ValueError(f"{frame.path}: boxes {np.shape(frame.boxes)} for {k} labels")
            if scored and (frame.scores is None or np.shape(frame.scores) != (k,)):
                raise ValueError(f"{frame.path}: predicted boxes need one score each")
            if k and (np.min(frame.labels) < 1 or np.max(frame.labels) > len(classes)):
                raise ValueError(f"{frame.path}: a label outside 1..{len(classes)}")


def _number(value: float) -> str:
    """float32's shortest text that reads back to the same float32."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def _write_csv(
    path: Path,
    classes: Sequence[str],
    truth: Sequence[FrameBoxes],
    predicted: Sequence[FrameBoxes],
    threshold: float,
) -> None:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(DETECTION_CSV_COLUMNS)
        for t, p in zip(truth, predicted, strict=True):
            error = p.error or t.error
            head = [spreadsheet_safe(str(p.path)), int(p.width), int(p.height)]
            if error or not len(p.labels):
                writer.writerow([*head, "", "", "", "", "", "", "", "", spreadsheet_safe(error)])
                continue
            order = np.argsort(-np.asarray(p.scores, dtype=np.float32), kind="stable")
            for i in order:
                score = float(np.float32(p.scores[i]))
                label = int(p.labels[i])
                writer.writerow([
                    *head, *(_number(v) for v in p.boxes[i]), _number(score), label,
                    spreadsheet_safe(classes[label - 1]),
                    "true" if score >= threshold else "false", "",
                ])  # fmt: skip


def _coco_dataset(classes: Sequence[str], truth: Sequence[FrameBoxes]) -> dict[str, Any]:
    images, annotations = [], []
    for image_id, frame in enumerate(truth, start=1):
        images.append({
            "id": image_id, "file_name": str(frame.path),
            "width": int(frame.width), "height": int(frame.height),
        })  # fmt: skip
        for box, label in zip(np.asarray(frame.boxes, dtype=np.float64), frame.labels, strict=True):
            x, y, w, h = _xywh(box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": k, "name": name} for k, name in enumerate(classes, start=1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _coco_results(predicted: Sequence[FrameBoxes]) -> list[dict[str, Any]]:
    results = []
    for image_id, frame in enumerate(predicted, start=1):
        if frame.error:
            continue
        for box, label, score in zip(frame.boxes, frame.labels, frame.scores, strict=True):
            results.append({
                "image_id": image_id, "category_id": int(label),
                "bbox": _xywh(np.asarray(box, dtype=np.float32)), "score": float(np.float32(score)),
            })  # fmt: skip
    return results


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, ensure_ascii=False) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DetectionFolderError(f"{path}: unreadable ({error})") from None


def _truth_from_coco(path: Path, n_classes: int) -> list[FrameBoxes]:
    """The frames of ``ground_truth.json`` in its order, their boxes grouped with numpy
    (a folder may hold millions of boxes)."""
    coco = _read_json(path)
    try:
        images = coco["images"]
        ids = np.array([int(image["id"]) for image in images], dtype=np.int64)
        annotations = coco["annotations"]
        image_of = np.array([int(a["image_id"]) for a in annotations], dtype=np.int64)
        labels = np.array([int(a["category_id"]) for a in annotations], dtype=np.int64)
        xywh = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
        sizes = [(str(i["file_name"]), int(i["width"]), int(i["height"])) for i in images]
    except (KeyError, TypeError, ValueError) as error:
        raise DetectionFolderError(f"{path}: not a COCO dataset of frames ({error!r})") from None
    if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
        raise DetectionFolderError(f"{path}: image ids are not 1..{len(ids)} in order")
    if len(image_of) and (image_of.min() < 1 or image_of.max() > len(ids)):
        raise DetectionFolderError(f"{path}: an annotation of an image that is not listed")
    if len(labels) and (labels.min() < 1 or labels.max() > n_classes):
        raise DetectionFolderError(f"{path}: a category_id outside 1..{n_classes}")
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    order = np.argsort(image_of, kind="stable")
    starts = np.searchsorted(image_of[order], np.arange(1, len(ids) + 2))
    return [
        FrameBoxes(name, width, height, boxes[order[a:b]], labels[order[a:b]])
        for (name, width, height), a, b in zip(sizes, starts[:-1], starts[1:], strict=True)
    ]


def _predicted_from_csv(
    path: Path, truth: Sequence[FrameBoxes], n_classes: int
) -> list[FrameBoxes]:
    """The CSV's rows grouped by frame, in the truth's frame order (each frame's rows are
    consecutive; a frame without boxes has one row with empty box cells)."""
    what = "the detections.csv of a detection folder from moths-predict"
    with csv_table(path, DETECTION_CSV_COLUMNS, what, DetectionFolderError) as table:
        if tuple(table.header) != DETECTION_CSV_COLUMNS:
            raise DetectionFolderError(
                f"{path}: columns are not {', '.join(DETECTION_CSV_COLUMNS)} in this order"
            )
        rows = [row for row in table.rows if row]
    if any(len(row) != len(DETECTION_CSV_COLUMNS) for row in rows):
        raise DetectionFolderError(f"{path}: a row without {len(DETECTION_CSV_COLUMNS)} cells")
    boxed = np.array([row[3] != "" for row in rows], dtype=bool)
    try:  # x1 y1 x2 y2 score, and label, of the rows that hold a box
        numbers = np.array([row[3:8] for row in rows if row[3]], dtype=np.float64).reshape(-1, 5)
        labels = np.array([int(row[8]) for row in rows if row[3]], dtype=np.int64)
    except ValueError as error:
        raise DetectionFolderError(f"{path}: a box cell that is not a number ({error})") from None
    if len(labels) and (labels.min() < 1 or labels.max() > n_classes):
        raise DetectionFolderError(f"{path}: a label outside 1..{n_classes}")
    box_index = np.cumsum(boxed) - boxed  # per row: how many boxes came before it
    frames, start = [], 0
    for number, frame in enumerate(truth, start=1):
        end = start
        while end < len(rows) and from_spreadsheet_safe(rows[end][0]) == frame.path:
            end += 1
        if end == start:
            raise DetectionFolderError(
                f"{path}: no row for frame {number} ({frame.path}); every frame has at least one"
            )
        first = int(box_index[start])
        last = first + int(boxed[start:end].sum())
        frames.append(
            FrameBoxes(
                frame.path,
                frame.width,
                frame.height,
                numbers[first:last, :4].astype(np.float32),
                labels[first:last],
                numbers[first:last, 4].astype(np.float32),
                from_spreadsheet_safe(rows[start][11]),
            )
        )
        start = end
    if start != len(rows):
        raise DetectionFolderError(
            f"{path}: {len(rows) - start} rows after the last frame of {GROUND_TRUTH_JSON}"
        )
    return frames
