"""Synthetic trap frames: moth crops pasted onto sheet backgrounds, with their boxes.

ami-ml's recipe for AMI's detector (``src/localization/synthesize_images.py``): a
detector learns where moths are from frames composed of crops you already have.
Each crop is flipped, scaled, rotated and brightened at random, cut out with a soft
elliptical edge (a crop is a rectangle; a moth is not) and placed where its box
overlaps no earlier one by more than ``max_iou``. Its box is the tight box of
every pixel it changed. Frame ``i`` depends only on (``seed``, ``i``) and the
inputs, so the same seed gives the same frames. No torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from moths_framework.data.coco_writer import (
    PastedMoth,
    SynthFrame,
    WrittenFrames,
    write_coco_frames,
)
from moths_framework.data.sources import Sample
from moths_framework.data.synth_backgrounds import (
    background_files,
    generated_sheet,
    photo_background,
)
from moths_framework.data.synth_crops import CropPool, CropSources

__all__ = [
    "COMMAND",
    "PastedMoth",
    "SynthError",
    "SynthFrame",
    "SynthResult",
    "SynthSettings",
    "moth_cutout",
    "synthesize",
    "synthesize_dataset",
]

COMMAND = "moths-synth-frames"

# Alpha below this (of 255) is cut to 0 after rotation: the box then holds every pixel
# that changed, and no almost-transparent rim makes it loose.
_ALPHA_FLOOR = 32
_TRIES = 20  # batches of candidate positions per moth
_CANDIDATES = 64  # candidate positions per batch


class SynthError(ValueError):
    """Settings or inputs that cannot make the frames asked for; the message is one line."""


@dataclass(frozen=True)
class SynthSettings:
    """How frames are made.

    Attributes:
        frames: how many.
        width, height: frame size in pixels.
        density: fewest and most moths per frame (each frame draws uniformly between).
        moth_size: smallest and largest moth, as the longer side of its crop in
            fractions of the frame's shorter side (at most 0.5).
        rotation: largest rotation either way, in degrees (180: any orientation).
        flip: mirror half of the crops.
        brightness: range of each crop's brightness factor.
        max_iou: most overlap (intersection over union) of two moths' boxes; 0: none.
        soft_edge: width of the elliptical cut-out's feathered rim, as a fraction of
            the crop's half-size; 0 pastes whole rectangles.
        seed: the seed.
    """

    frames: int = 100
    width: int = 2048
    height: int = 1536
    density: tuple[int, int] = (0, 60)
    moth_size: tuple[float, float] = (0.03, 0.09)
    rotation: float = 180.0
    flip: bool = True
    brightness: tuple[float, float] = (0.8, 1.2)
    max_iou: float = 0.1
    soft_edge: float = 0.3
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`SynthError` naming the first setting out of range."""
        rules = [
            (self.frames >= 0, f"frames must be 0 or more, got {self.frames}"),
            (min(self.width, self.height) >= 16, f"frame size {self.width}x{self.height} is "
             "under 16 pixels a side"),
            (0 <= self.density[0] <= self.density[1], f"density {self.density} must be "
             "MIN MAX with 0 <= MIN <= MAX"),
            (0 < self.moth_size[0] <= self.moth_size[1] <= 0.5, f"moth size {self.moth_size} "
             "must be MIN MAX with 0 < MIN <= MAX <= 0.5 (of the frame's shorter side)"),
            (0 <= self.rotation <= 180, f"rotation must be 0 to 180 degrees, got {self.rotation}"),
            (0 < self.brightness[0] <= self.brightness[1], f"brightness {self.brightness} must "
             "be MIN MAX with 0 < MIN <= MAX"),
            (0 <= self.max_iou <= 1, f"max IoU must be 0 to 1, got {self.max_iou}"),
            (0 <= self.soft_edge <= 1, f"soft edge must be 0 to 1, got {self.soft_edge}"),
        ]  # fmt: skip
        for ok, message in rules:
            if not ok:
                raise SynthError(message)


@dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize_dataset` wrote, and the crops it passed over."""

    written: WrittenFrames
    crops: int
    broken_crops: list[Path]


def synthesize_dataset(
    out: str | Path,
    crops: Sequence[str | Path],
    settings: SynthSettings,
    backgrounds: str | Path | None = None,
    by_species: bool = False,
    category: str = "moth",
    progress: bool = True,
) -> SynthResult:
    """Make ``settings.frames`` frames into ``out`` (``images/*.jpg``, ``instances.json``).

    Args:
        out: the dataset folder; replaced only when this command wrote it.
        crops: folders ``<species>/<image>`` and ``manifest.csv`` files.
        settings: how frames are made.
        backgrounds: a folder of photos of an empty sheet; ``None``: generated sheets.
        by_species: one COCO category per species instead of one ``category``.
        category: the name of the one category.
        progress: show a progress bar.

    Raises:
        SynthError, CropError, DataSourceError, BackgroundError, OutputFolderError: one
            line each.
    """
    settings.check()
    pool = CropPool(CropSources(crops))
    files = background_files(backgrounds) if backgrounds is not None else []
    categories = pool.species() if by_species else [category]
    info = {
        "description": f"synthetic trap frames made by {COMMAND}",
        "version": "1.0",
        "contributor": COMMAND,
        "settings": asdict(settings) | {"by_species": by_species, "generated_sheets": not files},
    }
    written = write_coco_frames(
        out,
        synthesize(settings, pool, files),
        categories,
        command=COMMAND,
        by_species=by_species,
        info=info,
        total=settings.frames,
        progress=progress,
    )
    broken = sorted(pool.samples[i].path for i in pool.broken)
    return SynthResult(written, len(pool.samples), broken)


def synthesize(
    settings: SynthSettings,
    crops: CropPool,
    backgrounds: Sequence[Path] = (),
    first_index: int = 0,
) -> Iterator[SynthFrame]:
    """Frames ``first_index`` to ``first_index + settings.frames - 1``, one at a time.

    Args:
        settings: how frames are made (checked first).
        crops: the moths.
        backgrounds: photos of an empty sheet; none: generated sheets.
        first_index: the number of the first frame (frame ``i`` draws from (seed, i)).

    Raises:
        SynthError: a setting out of range, or a moth that finds no place.
    """
    settings.check()
    for index in range(first_index, first_index + settings.frames):
        rng = np.random.default_rng([settings.seed, index])
        yield compose_frame(settings, crops, backgrounds, rng, index)


def compose_frame(
    settings: SynthSettings,
    crops: CropPool,
    backgrounds: Sequence[Path],
    rng: np.random.Generator,
    index: int = 0,
) -> SynthFrame:
    """One frame: a background, then ``density`` moths pasted one by one."""
    width, height = settings.width, settings.height
    if backgrounds:
        frame = photo_background(backgrounds, width, height, rng)
    else:
        frame = generated_sheet(width, height, rng)
    count = int(rng.integers(settings.density[0], settings.density[1] + 1))
    placed = np.zeros((0, 4), dtype=np.float64)  # x1, y1, x2, y2 of each moth so far
    moths = []
    for n in range(count):
        sample, moth = _moth(settings, crops, rng)
        x, y = _place(settings, moth.size, placed, rng, where=f"frame {index}, moth {n + 1}")
        frame.paste(moth.convert("RGB"), (x, y), moth.getchannel("A"))
        w, h = moth.size
        placed = np.vstack([placed, [x, y, x + w, y + h]])
        crop = f"{sample.path.parent.name}/{sample.path.name}"
        moths.append(PastedMoth((x, y, w, h), sample.species, crop))
    return SynthFrame(index, frame, moths)


def moth_cutout(
    settings: SynthSettings, crops: CropPool, rng: np.random.Generator
) -> tuple[Sample, Image.Image]:
    """One moth as :func:`compose_frame` pastes it: a crop drawn, flipped, scaled,
    brightened, cut out and rotated (RGBA, cut to its visible pixels), and its sample."""
    return _moth(settings, crops, rng)


def _moth(settings: SynthSettings, crops: CropPool, rng: np.random.Generator):
    """A crop drawn, flipped, scaled, brightened, cut out and rotated; RGBA cut to the
    box of its visible pixels."""
    shorter = min(settings.width, settings.height)
    longest = max(2, round(rng.uniform(*settings.moth_size) * shorter))
    # one decode size per run, so a crop drawn twice comes from the cache
    sample, crop = crops.draw(rng, max(2, round(settings.moth_size[1] * shorter)))
    if settings.flip and rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = longest / max(crop.size)
    size = (max(2, round(crop.width * scale)), max(2, round(crop.height * scale)))
    crop = crop.resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(crop, dtype=np.float32) * rng.uniform(*settings.brightness)
    rgba = np.dstack([np.clip(np.rint(pixels), 0, 255), _cut_out(size, settings.soft_edge)])
    moth = Image.fromarray(rgba.astype(np.uint8))
    angle = rng.uniform(-settings.rotation, settings.rotation)
    # premultiplied while rotating: no dark fringe from the transparent surround
    moth = moth.convert("RGBa").rotate(angle, Image.Resampling.BICUBIC, expand=True)
    moth = moth.convert("RGBA")
    alpha = np.asarray(moth.getchannel("A")).copy()
    alpha[alpha < _ALPHA_FLOOR] = 0
    moth.putalpha(Image.fromarray(alpha))
    box = moth.getchannel("A").getbbox()
    if box is None:  # a crop of two pixels rotated away: keep one opaque pixel
        return sample, Image.new("RGBA", (1, 1), (*crop.getpixel((0, 0)), 255))
    return sample, moth.crop(box)


def _cut_out(size: tuple[int, int], soft_edge: float) -> np.ndarray:
    """Alpha of a crop: an ellipse filling it with a rim ``soft_edge`` of its radius wide
    fading out; the whole rectangle when ``soft_edge`` is 0."""
    width, height = size
    if soft_edge <= 0:
        return np.full((height, width), 255.0, dtype=np.float32)
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    radius = np.hypot(xs[None, :], ys[:, None])
    return np.clip((1.0 - radius) / soft_edge, 0.0, 1.0) * 255.0


def _place(
    settings: SynthSettings,
    size: tuple[int, int],
    placed: np.ndarray,
    rng: np.random.Generator,
    where: str,
) -> tuple[int, int]:
    """A top-left corner inside the frame where the box overlaps no placed box by more
    than ``max_iou``."""
    w, h = size
    for _ in range(_TRIES):
        xs = rng.integers(0, settings.width - w + 1, _CANDIDATES)
        ys = rng.integers(0, settings.height - h + 1, _CANDIDATES)
        if len(placed) == 0:
            return int(xs[0]), int(ys[0])
        ious = _iou(np.stack([xs, ys, xs + w, ys + h], axis=1).astype(np.float64), placed)
        fits = np.flatnonzero((ious <= settings.max_iou).all(axis=1))
        if fits.size:
            return int(xs[fits[0]]), int(ys[fits[0]])
    raise SynthError(
        f"{where}: no place found where it overlaps others by IoU <= {settings.max_iou}; "
        "lower --density or --moth-size, raise --max-iou, or make frames larger"
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` [N, 4] with every box of ``b`` [M, 4]."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)
