"""Generate ``test_data/nights/``: one synthetic trap night whose moths' identities are known.

What it makes, with ``moths_framework.data.synth_nights`` from the crops of
``source_a/`` and ``source_b/`` on a generated sheet:

* ``garden/<YYYYmmddHHMMSS>.jpg``: 16 frames of 320x240, one every 2 minutes from
  2024-07-01 23:50 (the time in each name and in its EXIF DateTimeOriginal), 6 moths
  that stay, shift, leave and come back, or cross the frame;
* ``garden/IMG_0001.jpg``: a frame with no time at all (no EXIF, no date in its name);
* ``truth.csv``: one row per moth per frame (``path``, ``identity``, ``species``,
  ``behaviour``, box), paths from the repository root;
* ``deployments.csv``: the deployment ``garden`` (place, trap type, time zone, folder).

Seeded: re-running ``python test_data/generate_nights.py`` from the repository root
rewrites the same files (for a given Pillow/numpy build).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

from PIL import Image

from moths_framework.data.synth_crops import CropPool, CropSources
from moths_framework.data.synth_nights import NightSettings, render_night

ROOT = Path(__file__).resolve().parent
OUT = Path("test_data/nights")
SETTINGS = NightSettings(
    frames=16, interval=120, start=datetime(2024, 7, 1, 23, 50), moths=6, stay=(4, 12),
    seed=20240701,
)  # fmt: skip
DEPLOYMENTS = """deployment,latitude,longitude,trap_type,timezone,folder
garden,52.0907,5.1214,LepiLED sheet trap,Europe/Amsterdam,garden
"""


def main() -> None:
    os.chdir(ROOT.parent)  # paths in truth.csv are from the repository root
    shutil.rmtree(OUT, ignore_errors=True)
    pool = CropPool(CropSources([ROOT / "source_a", ROOT / "source_b"]))
    render_night(OUT / "garden", SETTINGS, pool)
    (OUT / "garden" / "truth.csv").rename(OUT / "truth.csv")
    first = sorted((OUT / "garden").glob("2*.jpg"))[0]
    with Image.open(first) as frame:  # saved again without its EXIF: no time anywhere
        frame.convert("RGB").save(OUT / "garden" / "IMG_0001.jpg", quality=85)
    (OUT / "deployments.csv").write_text(DEPLOYMENTS)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({size} bytes)")


if __name__ == "__main__":
    main()
