"""Synthetic nights (moths_framework.data.synth_nights): each behaviour does what its name
says, frames carry their time in name and EXIF, and a seed gives the same night."""

from __future__ import annotations

import csv
from datetime import datetime

import numpy as np
import pytest
from helpers.paths import TEST_DATA
from PIL import Image

from moths_framework.data.synth_crops import CropPool, CropSources
from moths_framework.data.synth_nights import NightSettings, plan_night, render_night

ONLY = {"stay": (1, 0, 0, 0), "shift": (0, 1, 0, 0), "return": (0, 0, 1, 0), "cross": (0, 0, 0, 1)}


@pytest.fixture(scope="module")
def pool() -> CropPool:
    return CropPool(CropSources([TEST_DATA / "source_a", TEST_DATA / "source_b"]))


def centres(boxes: dict) -> np.ndarray:
    return np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for _, b in sorted(boxes.items())])


@pytest.mark.parametrize("behaviour", list(ONLY))
def test_each_behaviour(pool, behaviour) -> None:
    settings = NightSettings(frames=40, moths=6, stay=(8, 8), behaviours=ONLY[behaviour],
                             width=640, height=480, seed=3)  # fmt: skip
    for moth in plan_night(settings, pool):
        assert moth.behaviour == behaviour and moth.boxes
        frames, where = sorted(moth.boxes), centres(moth.boxes)
        steps = np.linalg.norm(np.diff(where, axis=0), axis=1)
        if behaviour == "stay":
            assert np.ptp(where, axis=0).max() <= 8  # shakes by a pixel or two
            assert frames == list(range(frames[0], frames[-1] + 1))
        elif behaviour == "cross":  # 2 to 5% of the 800-pixel diagonal a frame
            boxes = np.array([b for _, b in sorted(moth.boxes.items())])
            whole = (
                (boxes[:, 0] > 0) & (boxes[:, 1] > 0) & (boxes[:, 2] < 640) & (boxes[:, 3] < 480)
            )  # a box cut at the edge moves its centre less
            inside = steps[whole[:-1] & whole[1:]]
            assert len(inside) == 0 or 15 <= inside.min() and inside.max() <= 41
        elif behaviour == "return" and len(frames) > 8:  # when it came back before dawn
            gaps = np.diff(frames)
            assert sorted(gaps)[-1] in (2, 3, 4) and sorted(gaps)[-2] == 1


def test_frames_carry_their_time_and_a_seed_repeats_the_night(pool, tmp_path) -> None:
    settings = NightSettings(frames=4, interval=90, start=datetime(2024, 7, 1, 23, 58), moths=3)
    render_night(tmp_path / "a", settings, pool)
    names = sorted(p.name for p in (tmp_path / "a").glob("*.jpg"))
    assert names == ["20240701235800.jpg", "20240701235930.jpg", "20240702000100.jpg",
                     "20240702000230.jpg"]  # fmt: skip
    with Image.open(tmp_path / "a" / names[2]) as frame:
        assert frame.getexif().get_ifd(0x8769)[0x9003] == "2024:07:02 00:01:00"
    render_night(tmp_path / "b", settings, pool)
    rows = [list(csv.reader((tmp_path / f / "truth.csv").open()))[1:] for f in "ab"]
    assert rows[0] and [r[1:] for r in rows[0]] == [r[1:] for r in rows[1]]
