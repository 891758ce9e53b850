"""Generate ``test_data/frames/``: small trap frames with ground-truth boxes, for the detector.

What it makes, with ``moths-synth-frames``' library (``moths_framework.data.synth_frames``)
from the crops of ``source_a/`` and ``source_b/`` on generated sheets:

* frames 1-24: 320x240, 0 to 12 moths each, 29 to 60 pixels long;
* frame 25: no moth at all (a negative);
* frame 26: 60 small moths (14 to 19 pixels long), none overlapping another;
* frames 27-88: as frames 1-24 (more frames for the detector to train and be tested on:
  ``configs/detector-dev.yaml`` splits them 61 / 13 / 14);
* ``instances.json`` (COCO): one category ``moth``; each box names its species in
  ``attributes.species`` and the crop it came from in ``attributes.crop``.

Seeded: re-running ``python test_data/generate_frames.py`` rewrites byte-identical
files (for a given Pillow/numpy build). It replaces ``frames/`` only (a folder the
command wrote), and needs the package installed (``make install``).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import chain
from pathlib import Path

from moths_framework.data.coco_writer import write_coco_frames
from moths_framework.data.synth_crops import CropPool, CropSources
from moths_framework.data.synth_frames import COMMAND, SynthSettings, synthesize

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "frames"
SEED = 20240608

USUAL = SynthSettings(
    frames=24, width=320, height=240, density=(0, 12), moth_size=(0.12, 0.25), seed=SEED
)
EMPTY = replace(USUAL, frames=1, density=(0, 0))
CROWDED = replace(USUAL, frames=1, density=(60, 60), moth_size=(0.06, 0.08), max_iou=0.0)
MORE = replace(USUAL, frames=62)  # after the first 26, which stay as they were
TOTAL = USUAL.frames + EMPTY.frames + CROWDED.frames + MORE.frames


def main() -> None:
    pool = CropPool(CropSources([ROOT / "source_a", ROOT / "source_b"]))
    frames = chain(
        synthesize(USUAL, pool),
        synthesize(EMPTY, pool, first_index=USUAL.frames),
        synthesize(CROWDED, pool, first_index=USUAL.frames + 1),
        synthesize(MORE, pool, first_index=USUAL.frames + 2),
    )
    info = {"description": "test_data frames, made by test_data/generate_frames.py"}
    written = write_coco_frames(
        OUT, frames, ["moth"], command=COMMAND, info=info, total=TOTAL, progress=False
    )
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {written.frames} frames with {written.moths} moths to {OUT} ({size} bytes)")


if __name__ == "__main__":
    main()
