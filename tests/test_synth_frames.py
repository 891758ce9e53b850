"""moths-synth-frames: seeded frames, density and overlap limits, boxes on the pasted
moths, COCO output the COCO API loads, and the committed test_data/frames."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from faster_coco_eval import COCO, COCOeval_faster
from helpers.paths import TEST_DATA
from PIL import Image

from moths_framework.cli.synth_frames import main as synth_frames
from moths_framework.data.coco import read_coco
from moths_framework.data.synth_crops import CropPool, CropSources
from moths_framework.data.synth_frames import (
    SynthError,
    SynthSettings,
    compose_frame,
    synthesize,
    synthesize_dataset,
)

SOURCES = [TEST_DATA / "source_a", TEST_DATA / "source_b"]
SMALL = SynthSettings(
    frames=6, width=160, height=120, density=(2, 9), moth_size=(0.15, 0.3), seed=5
)


@pytest.fixture(scope="module")
def pool() -> CropPool:
    return CropPool(CropSources(SOURCES))


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.*")}


def test_the_same_seed_writes_byte_identical_frames_and_another_seed_others(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synthesize_dataset(tmp_path / name, SOURCES, replace(SMALL, seed=seed), progress=False)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == SMALL.frames + 2  # the frames, instances.json, .moths-output.json
    assert a == b
    assert a["images/000001.jpg"] != c["images/000001.jpg"]


def test_frame_i_depends_on_the_seed_and_i_alone(pool):
    late = next(synthesize(replace(SMALL, frames=1), pool, first_index=3))
    (*_, fourth) = synthesize(replace(SMALL, frames=4), pool)
    assert fourth.index == late.index == 3
    assert fourth.moths == late.moths and fourth.image.tobytes() == late.image.tobytes()


@pytest.mark.parametrize("density", [(0, 0), (3, 3), (2, 9), (20, 25)])
def test_every_frame_holds_a_count_in_the_density_range(pool, density):
    settings = replace(SMALL, frames=12, density=density, moth_size=(0.08, 0.12))
    counts = [len(frame.moths) for frame in synthesize(settings, pool)]
    assert all(density[0] <= n <= density[1] for n in counts), counts
    if density[1] - density[0] >= 5:
        assert len(set(counts)) > 2  # drawn, not fixed


@pytest.mark.parametrize("max_iou", [0.0, 0.25])
def test_no_two_boxes_overlap_more_than_the_limit(pool, max_iou):
    settings = replace(SMALL, frames=8, density=(15, 15), moth_size=(0.12, 0.2), max_iou=max_iou)
    ious = [
        _iou(a.box, b.box)
        for frame in synthesize(settings, pool)
        for a, b in combinations(frame.moths, 2)
    ]
    assert max(ious) <= max_iou
    if max_iou:
        assert max(ious) > 0  # crowded enough that the limit mattered


def test_a_moth_that_finds_no_place_is_one_line(pool):
    settings = replace(SMALL, density=(40, 40), moth_size=(0.5, 0.5), max_iou=0.0, rotation=0)
    with pytest.raises(SynthError, match=r"frame 0, moth \d+: no place found .* lower --density"):
        list(synthesize(settings, pool))


@pytest.mark.parametrize("soft_edge", [0.0, 0.3])
def test_each_box_is_the_tight_box_of_the_pixels_its_moth_changed(tmp_path, pool, soft_edge):
    backgrounds = tmp_path / "sheets"
    backgrounds.mkdir()
    Image.new("RGB", (200, 150), (128, 128, 128)).save(backgrounds / "grey.png")
    settings = replace(
        SMALL, density=(6, 6), moth_size=(0.12, 0.22), max_iou=0.0, soft_edge=soft_edge
    )
    for n in range(4):
        rng = np.random.default_rng([settings.seed, n])
        frame = compose_frame(settings, pool, [backgrounds / "grey.png"], rng)
        changed = (np.asarray(frame.image).astype(int) != 128).any(axis=2)
        inside = np.zeros_like(changed)
        for moth in frame.moths:
            x, y, w, h = moth.box
            assert 0 <= x and 0 <= y and x + w <= 160 and y + h <= 120
            box = changed[y : y + h, x : x + w]
            # every edge row and column of the box holds a changed pixel: the box is tight
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            assert box.mean() > 0.4  # mostly moth
            inside[y : y + h, x : x + w] = True
        assert not (changed & ~inside).any()  # nothing changed outside the boxes


def test_the_coco_output_loads_with_the_coco_api_and_evaluates_to_ap_1(tmp_path):
    out = tmp_path / "synth"
    synthesize_dataset(out, SOURCES, replace(SMALL, frames=5), by_species=True, progress=False)
    gt = COCO(str(out / "instances.json"))
    assert len(gt.getImgIds()) == 5 and len(gt.getAnnIds()) > 10
    names = {c["name"] for c in gt.loadCats(gt.getCatIds())}
    assert "Aglais io" in names and "moth" not in names
    for annotation in gt.loadAnns(gt.getAnnIds()):
        assert (
            gt.loadCats(annotation["category_id"])[0]["name"] == annotation["attributes"]["species"]
        )
    detections = [a | {"score": 1.0} for a in gt.loadAnns(gt.getAnnIds())]
    evaluation = COCOeval_faster(gt, gt.loadRes(detections), "bbox")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)  # mAP@[.5:.95] of the truth itself
    frames = read_coco(out / "instances.json").frames
    assert all(Image.open(f.path).size == (160, 120) for f in frames)


def test_the_command_writes_its_folder_refuses_others_and_replaces_its_own(tmp_path, capsys):
    args = ["--frames", "3", "--size", "160x120", "--density", "1", "4", "--no-progress"]
    out = tmp_path / "frames"
    assert synth_frames([str(out), *map(str, SOURCES), *args]) == 0
    assert "wrote 3 frames of 160x120" in capsys.readouterr().out
    assert synth_frames([str(out), *map(str, SOURCES), *args, "--frames", "2"]) == 0
    assert len(list((out / "images").iterdir())) == 2  # replaced: frame 3 is gone
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert synth_frames([str(other), *map(str, SOURCES), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder moths-synth-frames wrote" in err
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert synth_frames([str(tmp_path / "x"), *map(str, SOURCES), "--moth-size", "0.2", "0.9"]) == 2
    assert "moth size" in capsys.readouterr().err


def test_test_data_frames_hold_the_documented_frames():
    data = json.loads((TEST_DATA / "frames" / "instances.json").read_text())
    counts = Counter(a["image_id"] for a in data["annotations"])
    per_frame = [counts.get(image["id"], 0) for image in data["images"]]
    assert len(per_frame) == 88 and all(n <= 12 for n in per_frame[:24] + per_frame[26:])
    assert per_frame[24] == 0 and per_frame[25] == 60
    assert {(i["width"], i["height"]) for i in data["images"]} == {(320, 240)}
    size = sum(p.stat().st_size for p in (TEST_DATA / "frames").rglob("*") if p.is_file())
    assert size < 1_500_000
    assert all(a["attributes"]["species"] for a in data["annotations"])


def test_the_command_needs_no_pytorch():
    code = (
        "import sys, moths_framework.cli.synth_frames; "
        "print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
