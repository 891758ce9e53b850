"""Tracks that are not a moth of their own: boxes over several moths, second boxes on a moth.

Detectors now and then box two or three neighbouring moths together, or put a
second, shifted box on a moth beside its own box. Linked over the night, each such
box makes a track of its own, which a count would take for one more individual.
Moths sitting on a sheet rarely cover each other, so after linking each night:

1. **Over several moths**: a track whose box, in more than half of its frames,
   holds at least ``overlap`` of the area of the boxes of two or more other tracks
   of the same frame.
2. **A second box**: of the remaining tracks, taken strongest first (most boxes,
   then the largest sum of detection scores, then the first seen), a track whose
   box, in more than half of its frames, overlaps a box of one stronger track
   kept before it by at least ``overlap`` of the smaller box's area.

Such tracks are reported, not deleted: :func:`overlapping_tracks` names each with
the tracks it lies over, and moths-track writes why in ``track_uncounted``. Boxes
(almost) wholly inside one other track's boxes are not seen here: linking already
folded them into that track (:func:`.tracking.link_frames`). No torch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["OVER_SEVERAL", "SECOND_BOX", "Overlap", "overlapping_tracks"]

OVER_SEVERAL = "over several moths"
SECOND_BOX = "second box on a moth"


@dataclass(frozen=True)
class Overlap:
    """Why a track is not counted: ``kind`` (:data:`OVER_SEVERAL` or :data:`SECOND_BOX`)
    and the tracks its boxes lie over (most frames first; for a box over several moths,
    those that are not such boxes themselves, when there are any)."""

    kind: str
    tracks: tuple[int, ...]


def overlapping_tracks(
    boxes: Sequence[np.ndarray],
    numbers: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    overlap: float,
) -> dict[int, Overlap]:
    """The tracks of one night that are no moth of their own, and why.

    Args:
        boxes: per frame, its boxes ``[k, 4]`` (x1, y1, x2, y2).
        numbers: per frame, each box's track.
        scores: per frame, each box's detection score (ties between tracks of as many
            boxes go to the larger sum).
        overlap: the share of a box's area (the held box's; the smaller box's for a
            second box) from which two boxes are taken for the same moth, in (0, 1].
    """
    length: Counter = Counter()
    strength: defaultdict[int, float] = defaultdict(float)
    for assigned, score in zip(numbers, scores, strict=True):
        for track, value in zip(assigned, score, strict=True):
            length[int(track)] += 1
            strength[int(track)] += float(value)
    found = _over_several(boxes, numbers, overlap, length)
    order = sorted(length, key=lambda t: (-length[t], -strength[t], t))
    kept: dict[int, list[tuple[np.ndarray, int]]] = defaultdict(list)  # frame -> kept boxes
    where: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)  # track -> (frame, box)
    for frame, (box, assigned) in enumerate(zip(boxes, numbers, strict=True)):
        for k, track in enumerate(assigned):
            where[int(track)].append((frame, box[k]))
    for track in order:
        if track in found:
            continue
        partners: Counter = Counter()
        for frame, box in where[track]:
            for other_box, other in kept[frame]:
                smaller = min(_area(box), _area(other_box))
                if _shared(box, other_box) >= overlap * max(smaller, 1e-9):
                    partners[other] += 1
        if partners and partners.most_common(1)[0][1] * 2 > length[track]:
            found[track] = Overlap(SECOND_BOX, (partners.most_common(1)[0][0],))
        else:
            for frame, box in where[track]:
                kept[frame].append((box, track))
    return found


def _over_several(boxes, numbers, overlap: float, length: Counter) -> dict[int, Overlap]:
    frames_over: Counter = Counter()
    held: defaultdict[int, Counter] = defaultdict(Counter)
    for box, assigned in zip(boxes, numbers, strict=True):
        if len(box) < 3:
            continue
        inside = _shared_matrix(box) / np.maximum(_areas(box)[None, :], 1e-9)  # [i, j]: of j in i
        for i, track in enumerate(assigned):
            others = {int(assigned[j]) for j in np.flatnonzero(inside[i] >= overlap)}
            others.discard(int(track))
            if len(others) >= 2:
                frames_over[int(track)] += 1
                held[int(track)].update(others)
    over = {track for track, count in frames_over.items() if count * 2 > length[track]}
    found = {}
    for track in over:  # name the moths it lies over, not other such boxes (unless only those)
        tracks = [t for t, _ in held[track].most_common()]
        found[track] = Overlap(OVER_SEVERAL, tuple([t for t in tracks if t not in over] or tracks))
    return found


def _shared_matrix(boxes: np.ndarray) -> np.ndarray:
    width = np.clip(
        np.minimum(boxes[:, None, 2], boxes[None, :, 2])
        - np.maximum(boxes[:, None, 0], boxes[None, :, 0]), 0, None
    )  # fmt: skip
    height = np.clip(
        np.minimum(boxes[:, None, 3], boxes[None, :, 3])
        - np.maximum(boxes[:, None, 1], boxes[None, :, 1]), 0, None
    )  # fmt: skip
    return width * height


def _shared(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0.0) * max(height, 0.0)


def _area(box: np.ndarray) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
