"""Linking a night's detections into tracks: one track per moth while it sits on the sheet.

Frame by frame, in time order, every open track (its last box and its appearance) is
compared with every box of the frame. The cost of a link is the weighted mean of four
terms in [0, 1] (the terms of ami-data-companion's ``ml/models/tracking.py``, which
sums them):

- appearance: ``1 - cosine`` of the track's and the crop's feature vectors (the
  classifier's ``features``), clipped to [0, 1]; 0.5 when one crop has none; left
  out of the mean when the night has no features at all;
- overlap: ``1 - IoU`` of the two boxes;
- size: ``1 - smaller area / larger area``;
- distance: the distance between the boxes' centres over the frame's diagonal.

The cheapest set of links is found with ``scipy.optimize.linear_sum_assignment``
(each track takes at most one box, each box joins at most one track); a link
costing more than ``max_cost`` is not made, and a box left over starts a new track.
A track stays open through ``max_gap`` frames (or seconds) without a box, so a
moth the detector misses once, or that flies off and lands again, keeps its track.
A track's appearance is the mean of its crops' unit feature vectors, so one odd
crop does not break it. A track whose every box lies (almost) wholly inside a box of
one other track in the same frame is taken for the same moth boxed twice, as
detectors do now and then: it is folded into that track, unless that track's box
holds two or more tracks' boxes in a frame (a box over several moths). No torch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["CostWeights", "FrameBoxes", "TrackSettings", "link_costs", "link_frames", "nested_in"]

_UNLINKABLE = 1e6


@dataclass(frozen=True)
class CostWeights:
    """The weight of each term of a link's cost."""

    appearance: float = 1.0
    overlap: float = 1.0
    size: float = 1.0
    distance: float = 1.0

    def check(self) -> None:
        """ValueError for a negative weight, or all zero."""
        values = (self.appearance, self.overlap, self.size, self.distance)
        if min(values) < 0 or max(values) == 0:
            raise ValueError(f"cost weights must be >= 0 and not all 0, got {values}")


@dataclass(frozen=True)
class TrackSettings:
    """How boxes are linked.

    Attributes:
        weights: the cost terms' weights.
        max_cost: the dearest link made (a weighted mean of the terms, in [0, 1]).
        max_gap_frames: frames a track may miss and still be continued (0: only the
            next frame); ``None`` when ``max_gap_seconds`` rules instead.
        max_gap_seconds: seconds from a track's last box after which it is closed.
        nested: a track whose every box has at least this fraction of its area inside
            a larger box of one other track in the same frame is the same moth boxed
            twice (a detector's nested boxes): it is folded into that track (1: only
            boxes wholly inside).
        overlap: the share of a box's area from which a track lying over two or more
            other tracks, or over one stronger track, is no moth of its own and is not
            counted (:mod:`.overlapping_tracks`); ``None``: every track counts.
    """

    weights: CostWeights = field(default_factory=CostWeights)
    max_cost: float = 0.35
    max_gap_frames: int | None = 3
    max_gap_seconds: float | None = None
    nested: float = 0.8
    overlap: float | None = 0.5

    def check(self) -> None:
        """ValueError naming the first setting out of range."""
        self.weights.check()
        if self.max_cost <= 0:
            raise ValueError(f"the largest link cost must be > 0, got {self.max_cost}")
        if self.max_gap_frames is not None and self.max_gap_frames < 0:
            raise ValueError(f"the gap must be 0 frames or more, got {self.max_gap_frames}")
        if not 0 < self.nested <= 1:
            raise ValueError(f"the nested fraction must be in (0, 1], got {self.nested}")
        if self.overlap is not None and not 0 < self.overlap <= 1:
            raise ValueError(f"the overlap must be in (0, 1], got {self.overlap}")
        if self.max_gap_seconds is not None and self.max_gap_seconds <= 0:
            raise ValueError(f"the gap must be more than 0 seconds, got {self.max_gap_seconds}")


@dataclass(frozen=True)
class FrameBoxes:
    """One frame of a night: when (seconds), its diagonal (pixels), its boxes
    ``[k, 4]`` (x1, y1, x2, y2), their features ``[k, F]`` (NaN rows: none) and their
    detection scores ``[k]`` (``None``: all 0)."""

    seconds: float
    diagonal: float
    boxes: np.ndarray
    features: np.ndarray
    scores: np.ndarray | None = None


def link_costs(
    boxes_a: np.ndarray,
    boxes_b: np.ndarray,
    unit_a: np.ndarray,
    unit_b: np.ndarray,
    diagonal: float,
    weights: CostWeights,
) -> np.ndarray:
    """The cost ``[len(a), len(b)]`` of linking each box of ``a`` to each of ``b``.

    ``unit_a``, ``unit_b``: unit feature vectors (rows of NaN where there are none).
    """
    area_a = _area(boxes_a)[:, None]
    area_b = _area(boxes_b)[None, :]
    width = np.clip(
        np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
        - np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0]), 0, None
    )  # fmt: skip
    height = np.clip(
        np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
        - np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1]), 0, None
    )  # fmt: skip
    inter = width * height
    iou = inter / np.maximum(area_a + area_b - inter, 1e-9)
    size = np.minimum(area_a, area_b) / np.maximum(np.maximum(area_a, area_b), 1e-9)
    centre_a = (boxes_a[:, :2] + boxes_a[:, 2:]) / 2
    centre_b = (boxes_b[:, :2] + boxes_b[:, 2:]) / 2
    distance = np.linalg.norm(centre_a[:, None, :] - centre_b[None, :, :], axis=2)
    cost = weights.overlap * (1 - iou) + weights.size * (1 - size)
    cost += weights.distance * np.minimum(distance / max(diagonal, 1e-9), 1.0)
    total = weights.overlap + weights.size + weights.distance
    if weights.appearance and unit_a.shape[1] and unit_b.shape[1]:
        cosine = unit_a @ unit_b.T
        cost += weights.appearance * np.where(np.isnan(cosine), 0.5, np.clip(1 - cosine, 0, 1))
        total += weights.appearance
    return cost / max(total, 1e-12)


def link_frames(frames: Sequence[FrameBoxes], settings: TrackSettings) -> list[np.ndarray]:
    """Track numbers (0, 1, ... in order of first appearance) for each frame's boxes."""
    settings.check()
    open_tracks = _OpenTracks()
    numbers: list[np.ndarray] = []
    for position, frame in enumerate(frames):
        open_tracks.close_old(position, frame.seconds, settings)
        unit = _unit(frame.features)
        assigned = np.full(len(frame.boxes), -1, dtype=np.int64)
        if len(open_tracks) and len(frame.boxes):
            cost = link_costs(
                open_tracks.boxes(), frame.boxes, open_tracks.unit(), unit,
                frame.diagonal, settings.weights,
            )  # fmt: skip
            cost[cost > settings.max_cost] = _UNLINKABLE
            rows, columns = linear_sum_assignment(cost)
            for row, column in zip(rows, columns, strict=True):
                if cost[row, column] < _UNLINKABLE:
                    assigned[column] = open_tracks.track_at(row)
        for k in range(len(frame.boxes)):
            if assigned[k] < 0:
                assigned[k] = open_tracks.start()
            open_tracks.extend(int(assigned[k]), frame.boxes[k], unit[k], position, frame.seconds)
        numbers.append(assigned)
    return _fold_nested(frames, numbers, settings.nested)


def _fold_nested(
    frames: Sequence[FrameBoxes], numbers: list[np.ndarray], fraction: float
) -> list[np.ndarray]:
    """Fold each track whose every box lies inside a box of one other track in the same
    frame into that track (a detector's second, inner box on the same moth), then
    renumber the tracks 0, 1, ... in order of first appearance. A track that holds boxes
    of two or more other tracks in one frame is a box over several moths, not a moth:
    nothing is folded into it."""
    boxes: Counter = Counter()  # track -> its boxes
    inside: dict[int, Counter] = defaultdict(Counter)  # track -> holder track -> boxes
    over_several = set()
    for frame, assigned in zip(frames, numbers, strict=True):
        holder = nested_in(frame.boxes, fraction)
        held: dict[int, set[int]] = defaultdict(set)
        for k, track in enumerate(assigned):
            boxes[int(track)] += 1
            if holder[k] >= 0:
                inside[int(track)][int(assigned[holder[k]])] += 1
                held[int(assigned[holder[k]])].add(int(track))
        over_several |= {t for t, inner in held.items() if len(inner - {t}) >= 2}
    into = {}
    for track, holders in inside.items():
        holder, count = holders.most_common(1)[0]
        if count == boxes[track] and holder != track and holder not in over_several:
            into[track] = holder

    def final(track: int) -> int:
        seen = set()
        while track in into and track not in seen:
            seen.add(track)
            track = into[track]
        return track

    order: dict[int, int] = {}
    result = []
    for assigned in numbers:
        folded = [final(int(t)) for t in assigned]
        result.append(np.array([order.setdefault(t, len(order)) for t in folded], dtype=np.int64))
    return result


def nested_in(boxes: np.ndarray, fraction: float) -> np.ndarray:
    """For each box, the larger box of the same frame holding at least ``fraction`` of its
    area (the largest such), or -1; a holder is never itself held."""
    holder = np.full(len(boxes), -1, dtype=np.int64)
    if len(boxes) < 2:
        return holder
    area = _area(boxes)
    width = np.clip(
        np.minimum(boxes[:, None, 2], boxes[None, :, 2])
        - np.maximum(boxes[:, None, 0], boxes[None, :, 0]),
        0,
        None,
    )
    height = np.clip(
        np.minimum(boxes[:, None, 3], boxes[None, :, 3])
        - np.maximum(boxes[:, None, 1], boxes[None, :, 1]),
        0,
        None,
    )
    inside = width * height / np.maximum(area[:, None], 1e-9)  # [i, j]: share of i inside j
    for i in np.argsort(-area, kind="stable"):  # largest first: a holder's own state is known
        larger = [
            j
            for j in np.argsort(-area, kind="stable")
            if area[j] > area[i] and holder[j] < 0 and inside[i, j] >= fraction
        ]
        if larger:
            holder[i] = larger[0]
    return holder  # fmt: skip


class _OpenTracks:
    """The tracks that may still be continued: last box, summed unit features, last seen.

    :meth:`close_old` starts each frame and fixes the order of the rows of
    :meth:`boxes` and :meth:`unit` (:meth:`track_at` maps a row back to its track).
    """

    def __init__(self) -> None:
        self.count = 0
        self._last: dict[int, tuple[np.ndarray, np.ndarray | None, int, float]] = {}
        self._order: list[int] = []

    def __len__(self) -> int:
        return len(self._order)

    def start(self) -> int:
        self.count += 1
        return self.count - 1

    def extend(
        self, track: int, box: np.ndarray, unit: np.ndarray, position: int, seconds: float
    ) -> None:
        previous = self._last.get(track)
        summed = None if np.isnan(unit).any() or unit.size == 0 else unit
        if previous is not None and previous[1] is not None:
            summed = previous[1] + summed if summed is not None else previous[1]
        self._last[track] = (box, summed, position, seconds)

    def close_old(self, position: int, seconds: float, settings: TrackSettings) -> None:
        for track, (_, _, last_position, last_seconds) in list(self._last.items()):
            if settings.max_gap_seconds is not None:
                stale = seconds - last_seconds > settings.max_gap_seconds
            else:
                stale = position - last_position - 1 > settings.max_gap_frames
            if stale:
                del self._last[track]
        self._order = list(self._last)

    def track_at(self, row: int) -> int:
        return self._order[row]

    def boxes(self) -> np.ndarray:
        return np.stack([self._last[t][0] for t in self._order]).astype(np.float64)

    def unit(self) -> np.ndarray:
        rows = [self._last[t][1] for t in self._order]
        width = next((r.size for r in rows if r is not None), 0)
        stacked = np.stack([r if r is not None else np.full(width, np.nan) for r in rows])
        return _unit(stacked)


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, features / norms, np.nan)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
