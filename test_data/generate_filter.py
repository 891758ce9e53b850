"""Generate ``test_data/filter/``: crops for a moth / non-moth filter, as a detector cuts them.

What it makes (all paths relative to this file's directory):

* ``filter/moth/<n>.jpg``: 150 crops of the moths' boxes in ``frames/`` (the detector's
  frames, so run ``generate_frames.py`` first), drawn at random from boxes at least
  24 pixels long;
* ``filter/nonmoth/<kind>-<n>.jpg``: 38 crops of each kind of thing that is not a moth
  but lands on a trap's sheet and in a detector's boxes:

  - ``leaf``: a pointed leaf with midrib and veins, green to autumn brown;
  - ``beetle``: an oval beetle (black, brown, metallic green, or a red ladybird with
    spots) with six legs and short antennae, wings folded under its elytra;
  - ``fly``: a fly with a striped abdomen, big red eyes and two narrow glassy wings;
  - ``sheet``: an empty patch of sheet (what a detector finds in a fold or a stain).

  Leaves, beetles and flies are drawn like ``generate.py``'s moths (64x64, a tint from
  the same palette behind them, brightness and noise), then pasted on generated sheets
  by moths-synth-frames' library exactly as the moths of ``frames/`` were (scaled,
  turned, cut out with the same soft-edged halo), and their boxes cut out: the halo and
  the sheet say nothing about which class a crop is. Sheet patches are cut from those
  frames where no box lies.
* ``filter/hierarchy.csv``: the one-rank hierarchy (``species``: ``moth``, ``nonmoth``).

Seeded: re-running ``python test_data/generate_filter.py`` rewrites byte-identical files
(for a given Pillow/numpy build). It replaces ``filter/`` only, and needs the package
installed (``make install``).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from moths_framework.data.sources import ImageFolder
from moths_framework.data.synth_crops import CropPool
from moths_framework.data.synth_frames import SynthFrame, SynthSettings, synthesize

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "filter"
FRAMES = ROOT / "frames"
SEED = 20240609
MOTHS = 150  # moth crops
PER_KIND = 38  # crops of each kind of non-moth
SMALLEST = 24  # pixels: the shortest moth box side a crop is taken from
JPEG_QUALITY = 90
SIZE, CANVAS = 64, 128  # drawn at CANVAS, saved at SIZE (anti-aliasing), as generate.py

# generate.py's background tints: a halo's colour says nothing about the class
TINTS = [
    (150, 200, 245), (245, 230, 130), (160, 230, 170), (245, 165, 185),
    (185, 150, 240), (120, 95, 70), (70, 130, 50), (70, 90, 150),
]  # fmt: skip
# drawn as moths-synth-frames draws test_data/frames' moths (generate_frames.py's USUAL)
PASTED = SynthSettings(
    frames=32, width=320, height=240, density=(4, 8), moth_size=(0.12, 0.25), seed=SEED
)
HIERARCHY = "species\nmoth\nnonmoth\n"


def _leaf(image: Image.Image, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(image)
    colour = np.array([(70, 140, 50), (120, 160, 40), (150, 95, 40), (200, 125, 40)][
        rng.integers(4)
    ]) + rng.integers(-15, 16, 3)  # fmt: skip
    fill, rib = tuple(int(c) for c in colour), tuple(int(c * 0.6) for c in colour)
    length, width = rng.uniform(90, 115), rng.uniform(28, 50)
    top, cx = (CANVAS - length) / 2, CANVAS / 2 + rng.uniform(-4, 4)
    ts = np.linspace(0.0, 1.0, 24)
    half = width / 2 * np.sin(np.pi * ts) ** 0.8
    ys = top + ts * length
    outline = [(cx + h, y) for h, y in zip(half, ys, strict=True)] + [
        (cx - h, y) for h, y in zip(half[::-1], ys[::-1], strict=True)
    ]
    draw.polygon(outline, fill=fill)
    draw.line([(cx, top), (cx, top + length + 10)], fill=rib, width=3)  # midrib and stalk
    for t in np.linspace(0.2, 0.75, int(rng.integers(4, 7))):
        y = top + t * length
        reach = width / 2 * np.sin(np.pi * t) ** 0.8 * 0.85
        for side in (-1, 1):
            draw.line([(cx, y), (cx + side * reach, y - reach * 0.7)], fill=rib, width=2)


def _beetle(image: Image.Image, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(image)
    kind = int(rng.integers(4))
    shell = [(25, 25, 28), (80, 50, 30), (40, 110, 70), (200, 30, 30)][kind]
    dark = (15, 15, 15)
    cx, cy = CANVAS / 2, CANVAS / 2 + 8
    w, h = rng.uniform(34, 44), rng.uniform(46, 58)
    for side in (-1, 1):  # three legs a side, bent at the knee
        for dy in (-14, 0, 14):
            knee = (cx + side * (w / 2 + 10), cy + dy - 4)
            draw.line([(cx, cy + dy), knee], fill=dark, width=3)
            draw.line([knee, (knee[0] + side * 8, knee[1] + 10 + dy * 0.3)], fill=dark, width=3)
    head_y = cy - h / 2 - 16
    for side in (-1, 1):  # short, clubbed antennae
        tip = (cx + side * 14, head_y - 14)
        draw.line([(cx + side * 4, head_y), tip], fill=dark, width=2)
        draw.ellipse([tip[0] - 3, tip[1] - 3, tip[0] + 3, tip[1] + 3], fill=dark)
    draw.ellipse([cx - 8, head_y - 6, cx + 8, head_y + 8], fill=dark)
    draw.ellipse([cx - w * 0.35, cy - h / 2 - 12, cx + w * 0.35, cy - h / 2 + 6], fill=dark)
    draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=shell)
    draw.line([(cx, cy - h / 2), (cx, cy + h / 2)], fill=dark, width=2)  # the elytra's seam
    if kind == 3:  # a ladybird's spots
        for _ in range(int(rng.integers(4, 8))):
            x, y = cx + rng.uniform(-w / 3, w / 3), cy + rng.uniform(-h / 3, h / 3)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=dark)
    shine = tuple(min(255, c + 90) for c in shell)
    draw.ellipse([cx - w / 3, cy - h / 3, cx - w / 3 + 7, cy - h / 3 + 10], fill=shine)


def _fly(image: Image.Image, rng: np.random.Generator) -> None:
    body = [(40, 40, 40), (70, 70, 60), (40, 60, 50)][int(rng.integers(3))]
    cx, cy = CANVAS / 2, CANVAS / 2
    spread = rng.uniform(18, 32)  # degrees from the body's axis
    wings = Image.new("L", (CANVAS, CANVAS), 0)  # glassy: the background shows through
    wing_draw = ImageDraw.Draw(wings)
    length = rng.uniform(42, 52)
    for side in (-1, 1):
        angle = np.radians(180 - side * spread)  # pointing back, down the image
        ts = np.linspace(0, 1, 16)
        half = 7 * np.sin(np.pi * ts)
        dx, dy = np.sin(angle), -np.cos(angle)
        points = [(cx + dx * t * length - dy * h, cy - 6 + dy * t * length + dx * h)
                  for t, h in zip(ts, half, strict=True)]  # fmt: skip
        points += [(cx + dx * t * length + dy * h, cy - 6 + dy * t * length - dx * h)
                   for t, h in zip(ts[::-1], half[::-1], strict=True)]  # fmt: skip
        wing_draw.polygon(points, fill=140)
    image.paste((225, 230, 235), (0, 0), wings)
    draw = ImageDraw.Draw(image)
    for side in (-1, 1):
        for dy in (-6, 0, 6):
            draw.line([(cx, cy + dy), (cx + side * 22, cy + dy + 10)], fill=body, width=2)
    abdomen = (cx - 10, cy + 2, cx + 10, cy + 36)
    draw.ellipse(abdomen, fill=body)
    for y in (cy + 12, cy + 20, cy + 28):  # stripes
        draw.line([(cx - 8, y), (cx + 8, y)], fill=(150, 140, 100), width=2)
    draw.ellipse([cx - 11, cy - 12, cx + 11, cy + 8], fill=body)  # thorax
    draw.ellipse([cx - 10, cy - 24, cx + 10, cy - 10], fill=body)  # head
    for side in (-1, 1):
        draw.ellipse([cx + side * 10 - 6, cy - 25, cx + side * 10 + 6, cy - 13], fill=(150, 30, 25))


DRAWERS: dict[str, Callable[[Image.Image, np.random.Generator], None]] = {
    "leaf": _leaf,
    "beetle": _beetle,
    "fly": _fly,
}
KINDS = tuple(DRAWERS)


def _drawing(kind: str, rng: np.random.Generator) -> Image.Image:
    """One 64x64 image of ``kind`` on a tinted background, as generate.py draws a moth."""
    tint = np.array(TINTS[int(rng.integers(len(TINTS)))]) + rng.integers(-12, 13, 3)
    image = Image.new("RGB", (CANVAS, CANVAS), tuple(int(c) for c in np.clip(tint, 0, 255)))
    DRAWERS[kind](image, rng)
    turn = rng.uniform(-20, 20)
    image = image.rotate(turn, Image.Resampling.BICUBIC, fillcolor=image.getpixel((0, 0)))
    image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.float64) * rng.uniform(0.9, 1.1)
    pixels += rng.normal(0, 3.0, pixels.shape)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _as_saved(frame: SynthFrame) -> Image.Image:
    """The frame as write_coco_frames saves it (JPEG at quality 90), read back."""
    return Image.open(io.BytesIO(_jpeg(frame.image))).convert("RGB")


def moth_crops(rng: np.random.Generator) -> list[Image.Image]:
    """``MOTHS`` crops of frames/' boxes at least ``SMALLEST`` pixels a side."""
    coco = json.loads((FRAMES / "instances.json").read_text())
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    boxes = [
        (a["image_id"], a["bbox"]) for a in coco["annotations"] if min(a["bbox"][2:]) >= SMALLEST
    ]
    chosen = sorted(rng.choice(len(boxes), MOTHS, replace=False))
    crops = []
    for index in chosen:
        image_id, (x, y, w, h) = boxes[index]
        with Image.open(FRAMES / "images" / files[image_id]) as frame:
            crops.append(frame.convert("RGB").crop((x, y, x + w, y + h)))
    return crops


def nonmoth_crops(rng: np.random.Generator) -> dict[str, list[Image.Image]]:
    """``PER_KIND`` crops of each kind: leaves, beetles, flies pasted on sheets, and
    empty sheet between them."""
    with tempfile.TemporaryDirectory() as folder:
        for kind in KINDS:
            (Path(folder) / kind).mkdir()
            for n in range(PER_KIND):
                _drawing(kind, rng).save(Path(folder) / kind / f"{n}.png")
        pool = CropPool(ImageFolder(folder))
        crops: dict[str, list[Image.Image]] = {kind: [] for kind in (*KINDS, "sheet")}
        for frame in synthesize(PASTED, pool):
            image = _as_saved(frame)
            for moth in frame.moths:
                x, y, w, h = moth.box
                crops[moth.species].append(image.crop((x, y, x + w, y + h)))
            crops["sheet"] += _empty_patches(image, [m.box for m in frame.moths], rng)
    return {kind: _pick(found, rng, kind) for kind, found in crops.items()}


def _pick(found: list[Image.Image], rng: np.random.Generator, kind: str) -> list[Image.Image]:
    if len(found) < PER_KIND:
        raise SystemExit(f"only {len(found)} {kind} crops; raise PASTED.frames")
    return [found[i] for i in sorted(rng.choice(len(found), PER_KIND, replace=False))]


def _empty_patches(image: Image.Image, boxes: list, rng: np.random.Generator) -> list[Image.Image]:
    """Up to two patches of ``image``, sized as the pasted boxes, overlapping none."""
    patches = []
    for _ in range(50):
        side = int(rng.integers(30, 61))
        x, y = int(rng.integers(0, image.width - side)), int(rng.integers(0, image.height - side))
        if all(x + side <= bx or bx + bw <= x or y + side <= by or by + bh <= y
               for bx, by, bw, bh in boxes):  # fmt: skip
            patches.append(image.crop((x, y, x + side, y + side)))
            if len(patches) == 2:
                break
    return patches


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "moth").mkdir(parents=True)
    (OUT / "nonmoth").mkdir()
    for n, crop in enumerate(moth_crops(np.random.default_rng([SEED, 0])), start=1):
        (OUT / "moth" / f"{n}.jpg").write_bytes(_jpeg(crop))
    for kind, crops in nonmoth_crops(np.random.default_rng([SEED, 1])).items():
        for n, crop in enumerate(crops, start=1):
            (OUT / "nonmoth" / f"{kind}-{n}.jpg").write_bytes(_jpeg(crop))
    (OUT / "hierarchy.csv").write_text(HIERARCHY, encoding="utf-8")
    files = [p for p in OUT.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(f"wrote {len(files)} files to {OUT} ({size} bytes)")


if __name__ == "__main__":
    main()
