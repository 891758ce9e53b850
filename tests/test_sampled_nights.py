"""moths-track's nights.csv: every night a camera photographed the sheet, moths or none,
and a run.json beside every file moths-track writes.

The oracle is the hand-made detections.csv below: which frames were searched, when
(their names carry the time), and which found a moth, stated by hand.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from moths_framework.cli.track import main as track
from moths_framework.nights.sampled_nights import NightsError, read_nights

COLUMNS = ["path", "width", "height", "detection", "x1", "y1", "x2", "y2", "detection_score",
           "detection_class", "crop", "error"]  # fmt: skip
# garden, night 2024-07-01: a moth on two frames (22:00, 22:02), nothing at 23:30 and at
# 02:00 the next morning (same night); night 2024-07-02: one frame, nothing on it (an
# absence); night 2024-07-03: a frame that could not be read (not sampled). pond: one
# frame with a moth at 21:00 on 2024-07-01. And a frame with no time in its name.
BOX = ["1", "10", "10", "50", "50", "0.9", "moth", ""]
EMPTY = [""] * 8
ROWS = [
    ["garden/20240701220000.jpg", "800", "600", *BOX, ""],
    ["garden/20240701220200.jpg", "800", "600", *BOX, ""],
    ["garden/20240701233000.jpg", "800", "600", *EMPTY, ""],
    ["garden/20240702020000.jpg", "800", "600", *EMPTY, ""],
    ["garden/20240702230000.jpg", "800", "600", *EMPTY, ""],
    ["garden/20240703230000.jpg", "", "", *EMPTY, "cannot identify image file"],
    ["pond/20240701210000.jpg", "800", "600", *BOX, ""],
    ["pond/snapshot.jpg", "800", "600", *EMPTY, ""],
]
DEPLOYMENTS = "deployment,latitude,longitude,timezone\ngarden,52,5,Europe/Amsterdam\npond,52,5,\n"


@pytest.fixture
def tracked(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    with (tmp_path / "detections.csv").open("w", newline="") as file:
        csv.writer(file).writerows([COLUMNS, *ROWS])
    (tmp_path / "deployments.csv").write_text(DEPLOYMENTS, encoding="utf-8")
    args = ["detections.csv", "--deployments", "deployments.csv", "--output", "out/tracks.csv"]
    assert track([*args, "--no-progress"]) == 0
    return tmp_path / "out"


def test_nights_csv_lists_nights_without_a_moth(tracked) -> None:
    with (tracked / "nights.csv").open(newline="", encoding="utf-8") as file:
        rows = [tuple(row.values()) for row in csv.DictReader(file)]
    assert rows == [  # by hand; Amsterdam is at +02:00 in July, pond has no zone
        ("garden", "2024-07-01", "4", "2024-07-01T22:00:00+02:00", "2024-07-02T02:00:00+02:00"),
        ("garden", "2024-07-02", "1", "2024-07-02T23:00:00+02:00", "2024-07-02T23:00:00+02:00"),
        ("pond", "2024-07-01", "1", "2024-07-01T21:00:00", "2024-07-01T21:00:00"),
    ]
    assert [n.hours for n in read_nights(tracked / "nights.csv")] == [4.0, 0.0, 0.0]


def test_every_file_written_has_a_run_json(tracked) -> None:
    names = ["tracks.csv", "nights.csv", "untimed_frames.csv"]
    records = [json.loads((tracked / f"{n}.run.json").read_text(encoding="utf-8")) for n in names]
    assert [r["output"]["path"] for r in records] == [str(Path("out") / n) for n in names]
    assert len({r["run_id"] for r in records}) == 1  # one run, one id
    assert all(r["inputs"][0]["path"] == "detections.csv" for r in records)


def test_a_second_run_without_untimed_frames_removes_the_list_and_its_record(tracked) -> None:
    rows = [r for r in ROWS if "snapshot" not in r[0]]
    with Path("detections.csv").open("w", newline="") as file:
        csv.writer(file).writerows([COLUMNS, *rows])
    args = ["detections.csv", "--deployments", "deployments.csv", "--output", "out/tracks.csv"]
    assert track([*args, "--no-progress"]) == 0
    assert not (tracked / "untimed_frames.csv").exists()
    assert not (tracked / "untimed_frames.csv.run.json").exists()


def test_a_nights_csv_of_yours_is_not_overwritten(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with (tmp_path / "detections.csv").open("w", newline="") as file:
        csv.writer(file).writerows([COLUMNS, *ROWS])
    (tmp_path / "nights.csv").write_text("mine\n", encoding="utf-8")
    assert track(["detections.csv", "--output", "tracks.csv", "--no-progress"]) == 2
    assert "nights.csv" in capsys.readouterr().err
    assert (tmp_path / "nights.csv").read_text(encoding="utf-8") == "mine\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployment,night,frames\n", "lacks column(s) first_frame, last_frame (expected a nights"),
        ("deployment,night,frames,first_frame,last_frame\nT,2024-07-1x,1,2024-07-01T22:00,"
         "2024-07-01T22:00\n", "night '2024-07-1x' is not YYYY-MM-DD"),
        ("deployment,night,frames,first_frame,last_frame\nT,2024-07-01,0,2024-07-01T22:00,"
         "2024-07-01T22:00\n", "frames 0"),
        ("deployment,night,frames,first_frame,last_frame\nT,2024-07-01,2,2024-07-01T23:00,"
         "2024-07-01T22:00\n", "last_frame is before first_frame"),
        ("deployment,night,frames,first_frame,last_frame\nT,2024-07-01,1,2024-07-01T22:00,"
         "2024-07-01T22:00\nT,2024-07-01,1,2024-07-01T22:00,2024-07-01T22:00\n", "listed twice"),
    ],
)  # fmt: skip
def test_a_bad_nights_csv_is_one_line(tmp_path, text, message) -> None:
    path = tmp_path / "nights.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NightsError, match=re.escape(message)):
        read_nights(path)


def test_the_truth_report_has_a_run_json_too(tracked) -> None:
    truth = tracked.parent / "truth.csv"
    truth.write_text(
        "path,identity,species,x1,y1,x2,y2\n"
        "garden/20240701220000.jpg,m1,Noctua pronuba,10,10,50,50\n"
        "garden/20240701220200.jpg,m1,Noctua pronuba,10,10,50,50\n",
        encoding="utf-8",
    )
    args = ["detections.csv", "--deployments", "deployments.csv", "--output", "out/tracks.csv"]
    assert track([*args, "--truth", "truth.csv", "--no-progress"]) == 0
    names = ["tracks.csv", "report.html", "track_metrics.json"]
    records = [json.loads((tracked / f"{n}.run.json").read_text(encoding="utf-8")) for n in names]
    assert len({r["run_id"] for r in records}) == 1
    assert records[1]["output"]["path"] == str(Path("out") / "report.html")
