"""Synthetic trap nights: frame sequences of moths whose identities are known.

A night is a fixed sheet photographed every ``interval`` seconds. Each moth (an
individual: one cut-out from :func:`.synth_frames.moth_cutout`, so it looks the
same all night) arrives at some frame and does one of:

- ``stay``: sits still, the box shaking by a pixel or two (camera, lamp);
- ``shift``: sits, and now and then walks a few pixels;
- ``return``: sits, leaves for 1 to ``max_absence`` frames, lands again nearby;
- ``cross``: walks across the frame, a few percent of the diagonal a frame, until
  it leaves the frame.

:func:`plan_night` draws the moths and their boxes (no pixels); :func:`render_night`
pastes them on the sheet and writes the frames, named by their time (AMI's
``%Y%m%d%H%M%S``) with the same time in EXIF ``DateTimeOriginal``, and ``truth.csv``:
one row per moth per frame (``path``, ``identity``, ``species``, ``behaviour``, box).
Night ``i`` depends only on (``seed``, ``i``) and the crops. No torch.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from moths_framework.data.synth_backgrounds import generated_sheet
from moths_framework.data.synth_crops import CropPool
from moths_framework.data.synth_frames import SynthSettings, moth_cutout

__all__ = ["BEHAVIOURS", "NightMoth", "NightSettings", "plan_night", "render_night"]

BEHAVIOURS = ("stay", "shift", "return", "cross")
TRUTH_COLUMNS = ("path", "identity", "species", "behaviour", "x1", "y1", "x2", "y2")
_EXIF_IFD, _DATE_TIME_ORIGINAL = 0x8769, 0x9003


@dataclass(frozen=True)
class NightSettings:
    """How a night is made.

    Attributes:
        frames: frames in the night.
        interval: seconds between frames.
        start: the first frame's local time.
        width, height: frame size.
        moths: individuals that visit (each arrives at a random frame).
        stay: fewest and most frames a moth sits (before it leaves, or in all).
        behaviours: the weight of each of :data:`BEHAVIOURS`.
        max_absence: most frames a ``return`` moth is away.
        moth_size: as :class:`SynthSettings`: longest side, fraction of the shorter side.
        seed: the seed.
    """

    frames: int = 60
    interval: float = 60.0
    start: datetime = datetime(2024, 7, 1, 21, 0, 0)
    width: int = 320
    height: int = 240
    moths: int = 12
    stay: tuple[int, int] = (4, 30)
    behaviours: tuple[float, float, float, float] = (0.4, 0.25, 0.2, 0.15)
    max_absence: int = 3
    moth_size: tuple[float, float] = (0.12, 0.25)
    seed: int = 0


@dataclass
class NightMoth:
    """One individual: who it is, and its box ``(x1, y1, x2, y2)`` in each frame it is in."""

    identity: str
    species: str
    behaviour: str
    cutout: Image.Image | None = None
    boxes: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def plan_night(settings: NightSettings, crops: CropPool, night: int = 0) -> list[NightMoth]:
    """The moths of night ``night`` and their boxes, frame by frame."""
    rng = np.random.default_rng([settings.seed, night])
    look = SynthSettings(width=settings.width, height=settings.height,
                         moth_size=settings.moth_size, seed=settings.seed)  # fmt: skip
    weights = np.asarray(settings.behaviours, dtype=np.float64)
    moths = []
    for number in range(1, settings.moths + 1):
        sample, cutout = moth_cutout(look, crops, rng)
        behaviour = BEHAVIOURS[int(rng.choice(len(BEHAVIOURS), p=weights / weights.sum()))]
        moth = NightMoth(f"n{night}-m{number}", sample.species, behaviour, cutout)
        _move(moth, settings, rng, moths)
        moths.append(moth)
    return moths


def _move(
    moth: NightMoth, settings: NightSettings, rng: np.random.Generator, others: list[NightMoth]
) -> None:
    w, h = moth.cutout.size
    width, height = settings.width, settings.height
    first = int(rng.integers(0, settings.frames))
    x, y = _free_spot(moth, first, settings, rng, others)
    if moth.behaviour == "cross":
        angle = rng.uniform(0, 2 * np.pi)
        step = rng.uniform(0.02, 0.05) * np.hypot(width, height)
        dx, dy = step * np.cos(angle), step * np.sin(angle)
        frame = first
        while frame < settings.frames and -w < x < width and -h < y < height:
            _put(moth, frame, x, y, settings)
            x, y, frame = x + dx, y + dy, frame + 1
        return
    frame, sits = first, int(rng.integers(settings.stay[0], settings.stay[1] + 1))
    returns = moth.behaviour == "return"
    for _ in range(2 if returns else 1):
        for frame in range(frame, min(frame + sits, settings.frames)):  # noqa: B020
            if moth.behaviour == "shift" and rng.random() < 0.2:
                x, y = x + rng.uniform(-8, 8), y + rng.uniform(-8, 8)
            shake = rng.normal(0, 1.0, 2)
            _put(moth, frame, x + shake[0], y + shake[1], settings)
        frame += 1 + int(rng.integers(1, settings.max_absence + 1))
        x, y = x + rng.uniform(-15, 15), y + rng.uniform(-15, 15)  # lands again nearby
        sits = int(rng.integers(settings.stay[0], settings.stay[1] + 1))


def _free_spot(moth, first, settings, rng, others) -> tuple[float, float]:
    """Where the moth lands: a spot whose box overlaps no other moth's box over the next
    frames by IoU above 0.1 (moths do not sit on each other), else the last spot tried."""
    w, h = moth.cutout.size
    near = [b for m in others for f, b in m.boxes.items() if first <= f < first + settings.stay[1]]
    held = np.asarray(near, dtype=np.float64).reshape(-1, 4)
    for _ in range(50):
        x, y = rng.uniform(0, settings.width - w), rng.uniform(0, settings.height - h)
        if not len(held) or _largest_iou((x, y, x + w, y + h), held) <= 0.1:
            break
    return float(x), float(y)


def _put(moth: NightMoth, frame: int, x: float, y: float, settings: NightSettings) -> None:
    """The box at ``(x, y)``, clipped to the frame; a moth less than half in is not seen."""
    w, h = moth.cutout.size
    x1, y1 = max(0, round(x)), max(0, round(y))
    x2, y2 = min(settings.width, round(x) + w), min(settings.height, round(y) + h)
    if (x2 - x1) * (y2 - y1) >= w * h / 2:
        moth.boxes[frame] = (x1, y1, x2, y2)


def render_night(
    out: str | Path,
    settings: NightSettings,
    crops: CropPool,
    night: int = 0,
    quality: int = 85,
) -> list[NightMoth]:
    """Write night ``night``'s frames into ``out`` and its ``truth.csv`` beside them.

    The night starts ``night`` days after ``settings.start``. Frame paths in
    ``truth.csv`` are relative to the current directory, as ``out`` is given.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    moths = plan_night(settings, crops, night)
    rng = np.random.default_rng([settings.seed, night, 1])
    sheet = generated_sheet(settings.width, settings.height, rng)
    start = settings.start + timedelta(days=night)
    rows = []
    for frame in range(settings.frames):
        taken = start + timedelta(seconds=frame * settings.interval)
        image = sheet.copy()
        for moth in moths:
            box = moth.boxes.get(frame)
            if box is not None:
                _paste(image, moth, box, settings)
        path = out / f"{taken:%Y%m%d%H%M%S}.jpg"
        exif = Image.Exif()
        exif.get_ifd(_EXIF_IFD)[_DATE_TIME_ORIGINAL] = f"{taken:%Y:%m:%d %H:%M:%S}"
        image.save(path, quality=quality, exif=exif)
        for moth in moths:
            if frame in moth.boxes:
                rows.append([str(path), moth.identity, moth.species, moth.behaviour,
                             *moth.boxes[frame]])  # fmt: skip
    with (out / "truth.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(TRUTH_COLUMNS)
        writer.writerows(rows)
    return moths


def _paste(image: Image.Image, moth: NightMoth, box: Sequence[int], settings) -> None:
    """Paste the cut-out so its visible part fills ``box`` (clipped at the frame's edge)."""
    w, h = moth.cutout.size
    x1, y1, x2, y2 = box
    left = x1 if x1 > 0 else x2 - w  # a moth leaving by the left/top edge is cut there
    top = y1 if y1 > 0 else y2 - h
    image.paste(moth.cutout.convert("RGB"), (left, top), moth.cutout.getchannel("A"))


def _largest_iou(box: tuple[float, float, float, float], boxes: np.ndarray) -> float:
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return float((inter / union).max())
