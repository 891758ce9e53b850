"""Generate the small synthetic moth dataset committed under ``test_data/``.

What it makes (all paths relative to this file's directory):

* ``source_a/<species name>/<n>.jpg|png`` and ``source_b/<species name>/<n>.jpg|png``:
  64x64 RGB images of a stylised moth (two mirrored wings plus a body) on a
  species-specific background tint, with a species-specific wing shape,
  colour and pattern.  Each image gets its own random position, rotation,
  scale, brightness and pixel noise.  About two thirds are JPEG (quality 90),
  one third PNG.
* eight real species taken from the Dutch moth hierarchy (``family.csv``),
  30 images each, except ``Biston betularia`` which is rare (4 images, so a
  ``min_samples: 5`` setting bundles it into class ``Other``), plus the folder
  ``Zygaena exulans`` (12 images), a real moth that is absent from the
  hierarchy and therefore also lands in ``Other``.
* deliberately bad files that a data-preparation step must hide or skip
  (truncated JPEG, zero-byte ``.jpg``, text file named ``.jpg``, a
  byte-identical duplicate across the two sources, a hidden file and a plain
  file at species-folder level), see ``PLANTED`` below.
* ``hierarchy.csv`` in the seed's format (UTF-8, ``;``-separated, every field
  ``"``-quoted): the real rows of the dataset species plus four real species
  that have no images.
* ``README.md`` describing all of the above.

The output is deterministic: every random draw comes from seeded numpy
generators, and the images are encoded without metadata, so re-running

    python test_data/generate.py

rewrites byte-identical files (for a given Pillow/numpy build).  The script
deletes and recreates ``source_a/`` and ``source_b/`` and overwrites
``hierarchy.csv`` and ``README.md``; it touches nothing else.

Depends only on Pillow and numpy.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent
SEED = 20240607
SIZE = 64  # final image size
CANVAS = 128  # drawing resolution (downsampled for anti-aliasing)
JPEG_QUALITY = 90

HEADER = ("speciesName", "nederNaam", "group", "family", "genus")


@dataclass(frozen=True)
class Species:
    name: str
    row: tuple[str, str, str, str, str] | None  # hierarchy row; None if absent from hierarchy
    counts: dict[str, int]  # images per source
    background: tuple[int, int, int]
    wing: tuple[int, int, int]
    accent: tuple[int, int, int]
    shape: str  # wing shape, shared within a genus
    pattern: str


# Rows copied verbatim from the real hierarchy file (family.csv).
SPECIES: list[Species] = [
    Species(
        "Pammene rhediella",
        ("Pammene rhediella", "luciferbladroller", "micro", "Tortricidae", "Pammene"),
        {"source_a": 18, "source_b": 12},
        background=(150, 200, 245),  # sky blue
        wing=(120, 70, 40),
        accent=(235, 150, 40),
        shape="triangle",
        pattern="band",
    ),
    Species(
        "Pammene aurana",
        ("Pammene aurana", "oranje dwergbladroller", "micro", "Tortricidae", "Pammene"),
        {"source_a": 30},
        background=(245, 230, 130),  # yellow
        wing=(60, 40, 30),
        accent=(250, 140, 20),
        shape="triangle",
        pattern="spots",
    ),
    Species(
        "Cydia pomonella",
        ("Cydia pomonella", "fruitmot", "micro", "Tortricidae", "Cydia"),
        {"source_a": 15, "source_b": 15},
        background=(160, 230, 170),  # mint green
        wing=(140, 140, 150),
        accent=(170, 90, 40),
        shape="narrow",
        pattern="stripes",
    ),
    Species(
        "Noctua pronuba",
        ("Noctua pronuba", "huismoeder", "macro", "Noctuidae", "Noctua"),
        {"source_a": 20, "source_b": 10},
        background=(245, 165, 185),  # pink
        wing=(150, 110, 60),
        accent=(250, 200, 0),
        shape="broad",
        pattern="hindband",
    ),
    Species(
        "Noctua comes",
        ("Noctua comes", "volgeling", "macro", "Noctuidae", "Noctua"),
        {"source_b": 30},
        background=(185, 150, 240),  # lilac
        wing=(180, 130, 90),
        accent=(90, 50, 30),
        shape="broad",
        pattern="stripes",
    ),
    Species(
        "Biston betularia",
        ("Biston betularia", "peper-en-zoutvlinder", "macro", "Geometridae", "Biston"),
        {"source_a": 4},
        background=(120, 95, 70),  # bark brown
        wing=(235, 235, 230),
        accent=(20, 20, 20),
        shape="round",
        pattern="pepper",
    ),
    Species(
        "Aglais io",
        ("Aglais io", "dagpauwoog", "rhop", "Nymphalidae", "Aglais"),
        {"source_a": 10, "source_b": 20},
        background=(70, 130, 50),  # leaf green
        wing=(170, 30, 30),
        accent=(40, 60, 200),
        shape="butterfly",
        pattern="eyespots",
    ),
    Species(
        "Pieris rapae",
        ("Pieris rapae", "klein koolwitje", "rhop", "Pieridae", "Pieris"),
        {"source_b": 30},
        background=(70, 90, 150),  # dusk blue
        wing=(250, 250, 240),
        accent=(30, 30, 30),
        shape="butterfly",
        pattern="tips",
    ),
    # Real moth (Alpine burnet) that is NOT in family.csv -> class Other.
    Species(
        "Zygaena exulans",
        None,
        {"source_b": 12},
        background=(60, 60, 60),  # dark grey
        wing=(20, 30, 60),
        accent=(220, 20, 30),
        shape="narrow",
        pattern="spots",
    ),
]

# Further real rows from family.csv for species without images.
EXTRA_HIERARCHY_ROWS: list[tuple[str, str, str, str, str]] = [
    ("Pammene fasciana", "gewone dwergbladroller", "micro", "Tortricidae", "Pammene"),
    ("Cydia splendana", "gewone spiegelmot", "micro", "Tortricidae", "Cydia"),
    ("Noctua fimbriata", "breedbandhuismoeder", "macro", "Noctuidae", "Noctua"),
    ("Vanessa atalanta", "atalanta", "rhop", "Nymphalidae", "Vanessa"),
]

# Planted files: (relative path, kind, reason). Kinds handled in plant_files().
# The numbered bad files continue the numbering after the valid images.
PLANTED: list[tuple[str, str, str]] = [
    (
        "source_a/Cydia pomonella/16.jpg",
        "truncated",
        "truncated JPEG: a valid JPEG of this species cut to half its bytes",
    ),
    ("source_b/Noctua comes/31.jpg", "empty", "zero-byte file with a .jpg extension"),
    ("source_a/Pammene aurana/31.jpg", "text", "plain text file named .jpg (not an image)"),
    (
        "source_b/Pammene rhediella/13.jpg",
        "duplicate:source_a/Pammene rhediella/1.jpg",
        "byte-identical duplicate of source_a/Pammene rhediella/1.jpg",
    ),
    (
        "source_a/Aglais io/.hidden.jpg",
        "hidden",
        "hidden file (dot-name, .DS_Store-style); a decodable JPEG, must be skipped by name",
    ),
    (
        "source_a/README.txt",
        "readme",
        "plain file at species-folder level (not a species directory)",
    ),
]


# --------------------------------------------------------------------------- drawing


def _right_wing_mask(shape: str) -> Image.Image:
    """Mask of the right-hand wing(s) on the CANVAS, body axis at x = CANVAS/2."""
    m = Image.new("L", (CANVAS, CANVAS), 0)
    d = ImageDraw.Draw(m)
    c = CANVAS // 2
    if shape == "triangle":  # compact swept-back forewing
        d.polygon([(c, 42), (c + 46, 58), (c + 30, 90), (c, 80)], fill=255)
    elif shape == "narrow":  # long narrow wing
        d.polygon([(c, 40), (c + 52, 70), (c + 44, 82), (c, 70)], fill=255)
    elif shape == "broad":  # broad noctuid wings, hindwing below forewing
        d.polygon([(c, 44), (c + 50, 52), (c + 44, 80), (c, 76)], fill=255)
        d.ellipse([c - 4, 68, c + 36, 100], fill=255)
    elif shape == "round":  # geometrid: rounded fore- and hindwing
        d.ellipse([c - 6, 36, c + 46, 74], fill=255)
        d.ellipse([c - 6, 64, c + 36, 98], fill=255)
    elif shape == "butterfly":  # big forewing + rounded hindwing
        d.ellipse([c - 4, 26, c + 54, 72], fill=255)
        d.ellipse([c - 4, 62, c + 42, 104], fill=255)
    else:
        raise ValueError(shape)
    return m


def _pattern_layer(sp: Species) -> Image.Image:
    """Wing colour with pattern, drawn on the right half and mirrored."""
    img = Image.new("RGB", (CANVAS, CANVAS), sp.wing)
    d = ImageDraw.Draw(img)
    c = CANVAS // 2
    a = sp.accent
    p = sp.pattern
    if p == "band":  # oblique band across the forewing
        d.polygon([(c + 18, 40), (c + 30, 40), (c + 22, 96), (c + 10, 96)], fill=a)
    elif p == "spots":
        for x, y in [(c + 14, 54), (c + 30, 60), (c + 20, 72), (c + 36, 72), (c + 12, 84)]:
            d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=a)
    elif p == "stripes":  # stripes along the wing
        for y in range(36, 104, 10):
            d.line([(c, y), (CANVAS, y + 14)], fill=a, width=4)
    elif p == "hindband":  # yellow hindwing with a dark border
        d.rectangle([c, 72, CANVAS, CANVAS], fill=a)
        d.arc([c - 4, 68, c + 36, 100], 0, 180, fill=(20, 20, 20), width=5)
    elif p == "pepper":  # fine speckles, fixed layout (per-image noise comes later)
        r = np.random.default_rng(7)
        for _ in range(70):
            x, y = r.integers(c, CANVAS), r.integers(30, 104)
            d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=a)
    elif p == "eyespots":
        for x, y, s in [(c + 32, 42, 11), (c + 24, 84, 9)]:
            d.ellipse([x - s, y - s, x + s, y + s], fill=(240, 220, 120))
            d.ellipse([x - s + 3, y - s + 3, x + s - 3, y + s - 3], fill=a)
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(10, 10, 10))
    elif p == "tips":  # dark forewing tips and one spot
        d.ellipse([c + 34, 22, c + 62, 46], fill=a)
        d.ellipse([c + 26, 52, c + 34, 60], fill=a)
    else:
        raise ValueError(p)
    arr = np.asarray(img).copy()
    arr[:, :c] = arr[:, c:][:, ::-1]
    return Image.fromarray(arr)


def _moth_template(sp: Species) -> Image.Image:
    """RGBA moth on a transparent CANVAS x CANVAS image."""
    right = np.asarray(_right_wing_mask(sp.shape))
    mask = np.maximum(right, right[:, ::-1])
    moth = _pattern_layer(sp).convert("RGBA")
    moth.putalpha(Image.fromarray(mask))
    d = ImageDraw.Draw(moth)
    c = CANVAS // 2
    body = (35, 30, 25)
    d.ellipse([c - 5, 36, c + 5, 96], fill=body + (255,))  # body
    d.ellipse([c - 6, 30, c + 6, 42], fill=body + (255,))  # head
    d.line([(c - 2, 32), (c - 14, 14)], fill=body + (255,), width=2)  # antennae
    d.line([(c + 2, 32), (c + 14, 14)], fill=body + (255,), width=2)
    return moth


def render(sp: Species, template: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One 64x64 RGB image of species ``sp`` with random variation."""
    # background: species tint, slight per-image shift and a soft vertical gradient
    base = np.array(sp.background, dtype=np.float64) + rng.normal(0, 4, 3)
    grad = np.linspace(-1, 1, CANVAS)[:, None, None] * rng.uniform(-12, 12)
    bg = np.clip(base[None, None, :] + grad + np.zeros((CANVAS, CANVAS, 3)), 0, 255)
    canvas = Image.fromarray(bg.astype(np.uint8), "RGB")

    # moth: scale, rotation, position jitter
    scale = rng.uniform(0.8, 1.05)
    angle = rng.uniform(-20, 20)
    size = int(round(CANVAS * scale))
    moth = template.resize((size, size), Image.Resampling.BICUBIC)
    moth = moth.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False)
    dx, dy = rng.integers(-10, 11, size=2)
    x = (CANVAS - size) // 2 + int(dx)
    y = (CANVAS - size) // 2 + int(dy)
    canvas.paste(moth, (x, y), moth)

    img = canvas.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    arr = np.asarray(img).astype(np.float64)
    arr = arr * rng.uniform(0.9, 1.1)  # brightness
    arr = arr + rng.normal(0, 3.0, arr.shape)  # sensor noise
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def ext_for(n: int) -> str:
    """Every third image is a PNG, the rest JPEG."""
    return "png" if n % 3 == 0 else "jpg"


# --------------------------------------------------------------------------- output


def write_images() -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for idx, sp in enumerate(SPECIES):
        template = _moth_template(sp)
        for source, n_images in sp.counts.items():
            rng = np.random.default_rng([SEED, idx, int(source[-1] == "b")])
            folder = ROOT / source / sp.name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(1, n_images + 1):
                ext = ext_for(n)
                (folder / f"{n}.{ext}").write_bytes(encode(render(sp, template, rng), ext))
            counts.setdefault(sp.name, {})[source] = n_images
    return counts


def plant_files() -> None:
    by_name = {sp.name: (i, sp) for i, sp in enumerate(SPECIES)}
    for rel, kind, _reason in PLANTED:
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        species_name = path.parent.name
        if kind == "truncated" or kind == "hidden":
            idx, sp = by_name[species_name]
            rng = np.random.default_rng([SEED, idx, 99, len(kind)])
            data = encode(render(sp, _moth_template(sp), rng), "jpg")
            path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data)
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "text":
            path.write_bytes(b"This is not an image, just text with a .jpg extension.\n")
        elif kind.startswith("duplicate:"):
            shutil.copyfile(ROOT / kind.split(":", 1)[1], path)
        elif kind == "readme":
            path.write_bytes(
                b"Images for this source were collected by the (fictional) source A.\n"
                b"This file is not a species folder and must be skipped.\n"
            )
        else:
            raise ValueError(kind)


def write_hierarchy() -> None:
    rows = [HEADER] + [sp.row for sp in SPECIES if sp.row is not None] + EXTRA_HIERARCHY_ROWS
    text = "".join(";".join(f'"{v}"' for v in row) + "\n" for row in rows)
    (ROOT / "hierarchy.csv").write_bytes(text.encode("utf-8"))


def write_readme(counts: dict[str, dict[str, int]]) -> None:
    lines = [
        "# test_data",
        "",
        "Small synthetic moth dataset for tests and demos (64x64 RGB, ~2/3 JPEG, ~1/3 PNG).",
        "Everything here is produced by `generate.py`; regenerate with",
        "",
        "```",
        "python test_data/generate.py",
        "```",
        "",
        "The script is seeded and writes byte-identical files on every run.",
        "Species rows in `hierarchy.csv` are copied from the real Dutch hierarchy (`family.csv`).",
        "",
        "## Species",
        "",
        "| species | group | family | genus | source_a | source_b | total |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for sp in SPECIES:
        a = counts[sp.name].get("source_a", 0)
        b = counts[sp.name].get("source_b", 0)
        if sp.row is None:
            group = family = genus = "(not in hierarchy)"
        else:
            _, _, group, family, genus = sp.row
        lines.append(f"| {sp.name} | {group} | {family} | {genus} | {a} | {b} | {a + b} |")
    lines += [
        "",
        "Counts are valid, unique images; planted files below come on top.",
        "`Biston betularia` (4 images) is rare and `Zygaena exulans` is absent from",
        "`hierarchy.csv`, so with `min_samples: 5` both end up in class `Other`.",
        "`hierarchy.csv` also lists "
        + ", ".join(f"`{r[0]}`" for r in EXTRA_HIERARCHY_ROWS)
        + ", which have no images.",
        "",
        "## Planted files (must be hidden/skipped by data preparation)",
        "",
        "| path | why |",
        "|---|---|",
    ]
    for rel, _kind, reason in PLANTED:
        lines.append(f"| `{rel}` | {reason} |")
    lines += [
        "",
        "## Frames (for the detector)",
        "",
        "`frames/` holds 26 trap frames of 320x240 with ground-truth boxes in COCO format",
        "(`frames/instances.json`, `frames/images/`), made from the images above by",
        "`python test_data/generate_frames.py` (moths-synth-frames' library; seeded):",
        "frames 1-24 with 0 to 12 moths each, frame 25 with none, frame 26 with 60 small",
        "ones. Each box names its species in `attributes.species`.",
        "",
        "## Filter crops (for a moth / non-moth filter)",
        "",
        "`filter/` holds crops as a detector cuts them, in the image-folder layout",
        "`<class>/<crop>`, made by `python test_data/generate_filter.py` (seeded; run",
        "`generate_frames.py` first): `filter/moth/` 150 crops of the moths' boxes in",
        "`frames/` (boxes at least 24 pixels a side), `filter/nonmoth/` 38 each of",
        "`leaf-<n>.jpg`, `beetle-<n>.jpg`, `fly-<n>.jpg` (drawn, then pasted on sheets by",
        "moths-synth-frames' library with the moths' halo and cut out) and `sheet-<n>.jpg`",
        "(empty sheet between them), and `filter/hierarchy.csv`, the one-rank hierarchy",
        "(`species`: `moth`, `nonmoth`). `configs/filter-dev.yaml` trains on it",
        "(docs/commands/filter.md).",
    ]
    lines.append("")
    (ROOT / "README.md").write_bytes("\n".join(lines).encode("utf-8"))


def main() -> None:
    for source in ("source_a", "source_b"):
        shutil.rmtree(ROOT / source, ignore_errors=True)
    counts = write_images()
    plant_files()
    write_hierarchy()
    write_readme(counts)
    digest = hashlib.sha256()
    for p in sorted(ROOT.rglob("*")):
        if p.is_file() and p.name != "generate.py":
            digest.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    n_files = sum(1 for p in ROOT.rglob("*") if p.is_file())
    print(f"wrote {n_files} files under {ROOT}, content sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
