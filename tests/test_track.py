"""moths-track: detections.csv to tracks.csv, checked against hand-built nights.

The oracle is the identity each box was given when the night was written here: a
moth that stays, one that shifts a few pixels, one that leaves for two frames and
comes back, one that crosses the frame, and, in another night, a moth on the sheet
across noon. Every expected track, answer and count is stated by hand, not computed
by the code under test.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from moths_framework.cli.track import main
from moths_framework.inference.prediction import OTHER_PREDICTION
from moths_framework.nights.night_tracks import TRACK_COLUMNS
from moths_framework.provenance import SCHEMA

COLUMNS = [
    "path", "width", "height", "detection", "x1", "y1", "x2", "y2", "detection_score",
    "detection_class", "crop", "species", "species_prob", "genus", "genus_prob",
    "prediction", "prediction_rank", "prediction_prob", "confident", "error",
]  # fmt: skip
START = datetime(2024, 7, 1, 22, 0, 0)
LOOKS = {name: np.eye(8)[i] for i, name in enumerate("ABCDEFGH")}  # orthogonal features
GENUS = {"Noctua pronuba": "Noctua", "Noctua comes": "Noctua", "Aglais io": "Aglais",
         "Pieris rapae": "Pieris", "Biston betularia": "Biston"}  # fmt: skip


def box_at(x: float, y: float, size: float = 40) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


def hand_night() -> list[list[tuple[str, tuple, str, float]]]:
    """Ten frames; each frame: (identity, box, species, species_prob) per moth."""
    frames = []
    for f in range(10):
        moths = [("A", box_at(50 + (f % 2), 60), "Noctua pronuba", 0.9)]  # stays, shakes
        moths.append(("B", box_at(300 + 3 * f, 200 - 2 * f), "Noctua comes", 0.8))  # shifts
        if f not in (4, 5):  # leaves for frames 4 and 5, lands 6 pixels away
            moths.append(("C", box_at(500 + (6 if f > 5 else 0), 400), "Aglais io", 0.7))
        if f >= 3:  # crosses: 25 pixels a frame on an 800 x 600 frame (diagonal 1000)
            moths.append(("D", box_at(100 + 25 * (f - 3), 450), "Aglais io", 0.85))
        frames.append(moths)
    return frames


def write_night(folder: Path, frames, start: datetime = START, deployment: str = "garden",
                rows_before: list | None = None):  # fmt: skip
    """detections.csv rows, features rows and the truth of ``frames`` (names carry times)."""
    rows, features, truth = rows_before or [], [], []
    for f, moths in enumerate(frames):
        taken = start + timedelta(minutes=2 * f)
        path = f"{folder.name}/{deployment}/{taken:%Y%m%d%H%M%S}.jpg"
        if not moths:
            rows.append([path, 800, 600] + [""] * (len(COLUMNS) - 3))
            features.append(np.full(8, np.nan))
        for number, (identity, box, species, prob) in enumerate(moths, start=1):
            genus = GENUS[species]
            rows.append([path, 800, 600, number, *box, 0.95, "moth", "", species, prob, genus,
                         prob, species, "species", prob, "true", ""])  # fmt: skip
            features.append(LOOKS[identity] + np.random.default_rng(f).normal(0, 0.05, 8))
            truth.append([path, f"{deployment}-{identity}", species, *box])
    return rows, features, truth


def save(folder: Path, rows, features, truth=None) -> tuple[Path, Path]:
    detections, vectors = folder / "detections.csv", folder / "features.npy"
    with detections.open("w", newline="") as file:
        csv.writer(file).writerows([COLUMNS, *rows])
    np.save(vectors, np.asarray(features, dtype=np.float32))
    if truth is not None:
        with (folder / "truth.csv").open("w", newline="") as file:
            csv.writer(file).writerows([["path", "identity", "species", "x1", "y1", "x2", "y2"],
                                        *truth])  # fmt: skip
    return detections, vectors


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def identities(rows, truth) -> dict[str, set[str]]:
    """track -> the true identities of its boxes (one each when the tracking is right)."""
    true = {(t[0], tuple(float(v) for v in t[3:])): t[1] for t in truth}
    found = defaultdict(set)
    for row in rows:
        box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        found[row["track"]].add(true[(row["path"], box)])
    return found


@pytest.fixture
def night(tmp_path, monkeypatch) -> tuple[Path, Path, list]:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    rows, features, truth = write_night(folder, hand_night())
    detections, vectors = save(folder, rows, features, truth)
    return detections, vectors, truth


def test_each_moth_is_one_track(night, tmp_path, capsys) -> None:
    detections, features, truth = night
    out = tmp_path / "out" / "tracks.csv"
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    rows = read(out)
    with detections.open(newline="") as file:
        header = next(csv.reader(file))
    assert list(rows[0]) == [*header, *TRACK_COLUMNS]
    assert len(rows) == 10 + 10 + 8 + 7  # every box, in file order
    found = identities(rows, truth)
    assert sorted(map(sorted, found.values())) == [
        ["garden-A"],
        ["garden-B"],
        ["garden-C"],
        ["garden-D"],
    ]
    # numbered in order of first appearance: A, B, C in frame 1, D in frame 4
    by_identity = {next(iter(v)): k for k, v in found.items()}
    assert by_identity == {f"garden-{m}": f"garden/2024-07-01/{n}" for n, m in
                           enumerate("ABCD", start=1)}  # fmt: skip
    first = rows[0]
    assert (first["deployment"], first["night"], first["timestamp"]) == (
        "garden",
        "2024-07-01",
        "2024-07-01T22:00:00",
    )
    assert "35 detections in 10 frames, 1 night(s): 4 tracks" in capsys.readouterr().out
    record = json.loads((out.parent / "tracks.csv.run.json").read_text())
    assert record["command"] == "moths-track" and len(record["inputs"]) == 2


def test_a_shorter_gap_splits_the_moth_that_left(night, tmp_path) -> None:
    detections, features, truth = night
    out = tmp_path / "tracks.csv"
    args = [str(detections), "--features", str(features), "--output", str(out), "--no-progress"]
    assert main([*args, "--max-gap", "1"]) == 0  # C is away 2 frames
    found = identities(read(out), truth)
    assert sorted(len(v) for v in found.values()) == [1] * 5  # C in two tracks, each pure
    assert sum(v == {"garden-C"} for v in found.values()) == 2
    assert main([*args, "--max-gap", "2"]) == 0  # exactly the 2 frames it was away
    assert sum(v == {"garden-C"} for v in identities(read(out), truth).values()) == 1
    assert main([*args, "--max-gap", "5m"]) == 0  # away 6 minutes, more than 5
    assert sum(v == {"garden-C"} for v in identities(read(out), truth).values()) == 2
    assert main([*args, "--max-gap", "7m"]) == 0
    assert sum(v == {"garden-C"} for v in identities(read(out), truth).values()) == 1


def test_the_vote_weighs_each_crop_by_its_confidence(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    # one moth, four frames: the classifier says Noctua pronuba 0.9, 0.8, then
    # Noctua comes 0.6, then Noctua pronuba 0.3
    said = [("Noctua pronuba", 0.9), ("Noctua pronuba", 0.8), ("Noctua comes", 0.6),
            ("Noctua pronuba", 0.3)]  # fmt: skip
    frames = [[("A", box_at(50, 60), species, prob)] for species, prob in said]
    detections, features = save(folder, *write_night(folder, frames)[:2])
    out = tmp_path / "tracks.csv"
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    rows = read(out)
    assert len({r["track"] for r in rows}) == 1
    # by hand: weight pronuba 0.9 + 0.8 + 0.3 = 2.0 of 2.6; its voters' mean 2.0 / 3
    expected = 2.0 / 2.6 * 2.0 / 3  # 0.5128...: clears species' 0.5
    for row in rows:
        assert row["track_prediction"] == "Noctua pronuba"
        assert (row["track_prediction_rank"], row["track_confident"]) == ("species", "true")
        assert float(row["track_prediction_prob"]) == pytest.approx(expected, abs=1e-6)
    # a higher species threshold: the genus answers (all four crops agree: Noctua)
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress", "--thresholds", "species=0.6"]) == 0  # fmt: skip
    row = read(out)[0]
    expected_genus = 1.0 * 2.6 / 4  # share 1, mean of 0.9, 0.8, 0.6, 0.3
    assert (row["track_prediction"], row["track_prediction_rank"]) == ("Noctua", "genus")
    assert float(row["track_prediction_prob"]) == pytest.approx(expected_genus, abs=1e-6)
    # the thresholds moths-infer used, from detections.csv's run.json, without --thresholds
    record = {"schema": SCHEMA, "settings": {"classifier": {"thresholds": {"species": 0.6}}}}
    (folder / "detections.csv.run.json").write_text(json.dumps(record))
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert read(out)[0]["track_prediction_rank"] == "genus"


def test_a_track_of_mostly_novel_crops_is_other(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    frames = [[("A", box_at(50, 60), "Noctua pronuba", 0.9)] for _ in range(3)]
    rows, features, _ = write_night(folder, frames)
    columns = [*COLUMNS[:-1], "novelty_score", "novel", "error"]
    novel = ["true", "true", "false"]
    rows = [[*r[:-1], 3.0, flag, r[-1]] for r, flag in zip(rows, novel, strict=True)]
    detections, vectors = folder / "d.csv", folder / "f.npy"
    with detections.open("w", newline="") as file:
        csv.writer(file).writerows([columns, *rows])
    np.save(vectors, np.asarray(features, dtype=np.float32))
    out = tmp_path / "tracks.csv"
    assert main([str(detections), "--features", str(vectors), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    row = read(out)[0]
    assert row["track_prediction"] == OTHER_PREDICTION
    assert float(row["track_prediction_prob"]) == pytest.approx(2 / 3, abs=1e-6)


def test_noon_ends_a_night_and_its_tracks(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    # one moth sits from 11:56 to 12:04: frames at 11:56, 11:58, then 12:00, 12:02, 12:04
    frames = [[("A", box_at(50, 60), "Aglais io", 0.9)] for _ in range(5)]
    detections, features = save(folder, *write_night(folder, frames, datetime(2024, 7, 2, 11,
                                                                            56))[:2])  # fmt: skip
    out = tmp_path / "tracks.csv"
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    rows = read(out)
    assert [r["night"] for r in rows] == ["2024-07-01"] * 2 + ["2024-07-02"] * 3
    assert [r["track"] for r in rows] == ["garden/2024-07-01/1"] * 2 + ["garden/2024-07-02/1"] * 3


def test_frames_without_a_time_are_listed(night, tmp_path, capsys) -> None:
    detections, features, _ = night
    rows = list(csv.reader(detections.open(newline="")))
    rows[1][0] = "night/garden/IMG_0001.jpg"  # frame 1's first box: a frame with no time
    with detections.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    out = tmp_path / "tracks.csv"
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert len(read(out)) == 34
    untimed = read(tmp_path / "untimed_frames.csv")
    assert [u["path"] for u in untimed] == ["night/garden/IMG_0001.jpg"]
    assert "1 frame(s) without a time left out" in capsys.readouterr().err
    rows[1][0] = "night/garden/20240701220000.jpg"  # timed again: the old list goes
    with detections.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    assert main([str(detections), "--output", str(out), "--no-progress"]) == 0
    assert not (tmp_path / "untimed_frames.csv").exists()
    for row in rows[1:]:
        row[0] = "night/garden/IMG_0001.jpg"
    with detections.open("w", newline="") as file:
        csv.writer(file).writerows(rows)
    assert main([str(detections), "--output", str(out), "--no-progress"]) == 1  # none timed


def test_bad_inputs_are_one_line_errors(night, tmp_path, capsys) -> None:
    detections, features, _ = night
    out = str(tmp_path / "tracks.csv")
    short = tmp_path / "short.npy"
    np.save(short, np.load(features)[:-1])
    assert main([str(detections), "--features", str(short), "--output", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the features have 34 rows" in err[0] and "has 35" in err[0]
    cut = tmp_path / "cut.csv"
    cut.write_text("path,width,height,x1,y1\na.jpg,1,1,0,0\n")
    assert main([str(cut), "--output", out]) == 2
    assert "lacks column(s) detection, x2, y2" in capsys.readouterr().err
    assert main([str(detections), "--output", out, "--max-gap", "soon"]) == 2
    assert "--max-gap 'soon'" in capsys.readouterr().err
    assert main([str(detections), "--output", out, "--cost", "colour=1"]) == 2
    assert "terms are appearance, overlap, size, distance" in capsys.readouterr().err
    assert main([str(detections), "--output", out, "--overlap", "most"]) == 2
    assert "--overlap 'most': a share in (0, 1], or off" in capsys.readouterr().err
    assert main([str(detections), "--output", out, "--overlap", "1.5"]) == 2
    assert "the overlap must be in (0, 1], got 1.5" in capsys.readouterr().err


def test_truth_scores_tracks_against_counting_detections(night, tmp_path, capsys) -> None:
    detections, features, _ = night
    out = tmp_path / "eval" / "tracks.csv"
    assert (
        main(
            [
                str(detections),
                "--features",
                str(features),
                "--output",
                str(out),
                "--truth",
                str(detections.parent / "truth.csv"),
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads((out.parent / "track_metrics.json").read_text())
    assert metrics["mota"] == pytest.approx(1.0) and metrics["idf1"] == pytest.approx(1.0)
    # by hand: true moths per species: pronuba 1, comes 1, io 2 (4 in all); tracks the
    # same; detections: pronuba 10, comes 10, io 8 + 7 = 15 -> |9| + |9| + |13| = 31 of 4
    assert metrics["count_error"] == pytest.approx(0.0)
    assert metrics["individuals_error"] == pytest.approx(0.0)
    assert metrics["detection_count_error"] == pytest.approx(31 / 4)
    report = (out.parent / "report.html").read_text()
    assert "IDF1" in report and "Counts per species per night" in report
    assert "MOTA 1.000, IDF1 1.000, count error 0.0% (detections 775.0%)" in (
        capsys.readouterr().out
    )


def test_appearance_tells_a_newcomer_on_the_same_spot(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    # A sits for 4 frames and leaves; one frame later E, another moth, lands on its spot
    frames = [[("A", box_at(50, 60), "Noctua pronuba", 0.9)] for _ in range(4)] + [[]]
    frames += [[("E", box_at(52, 60), "Noctua comes", 0.9)] for _ in range(4)]
    rows, features, truth = write_night(folder, frames)
    detections, vectors = save(folder, rows, features, truth)
    out = tmp_path / "tracks.csv"
    base = [str(detections), "--output", str(out), "--no-progress"]
    assert main(base) == 0  # boxes alone: the same spot, the same size: one track
    assert len(identities(read(out), truth)) == 1
    assert main([*base, "--features", str(vectors), "--cost", "appearance=3"]) == 0
    assert sorted(map(sorted, identities(read(out), truth).values())) == [
        ["garden-A"],
        ["garden-E"],
    ]


def test_a_second_box_inside_a_moths_box_is_the_same_moth(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    # the detector boxes A twice in every frame: its whole body, and its thorax alone
    frames = [[("A", box_at(50, 60), "Noctua pronuba", 0.9),
               ("A", box_at(60, 70, 15), "Noctua pronuba", 0.6)] for _ in range(5)]  # fmt: skip
    detections, vectors = save(folder, *write_night(folder, frames)[:2])
    out = tmp_path / "tracks.csv"
    assert main([str(detections), "--features", str(vectors), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert {r["track"] for r in read(out)} == {"garden/2024-07-01/1"}


def test_crops_scattered_over_other_species_do_not_outweigh_a_clear_winner(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "night"
    folder.mkdir()
    # one moth, ten frames: six crops say Noctua pronuba 0.7, four say four other species 0.6
    said = [("Noctua pronuba", 0.7)] * 6 + [
        ("Noctua comes", 0.6), ("Aglais io", 0.6), ("Pieris rapae", 0.6),
        ("Biston betularia", 0.6),
    ]  # fmt: skip
    frames = [[("A", box_at(50, 60), species, prob)] for species, prob in said]
    detections, features = save(folder, *write_night(folder, frames)[:2])
    out = tmp_path / "tracks.csv"
    assert main([str(detections), "--features", str(features), "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    row = read(out)[0]
    # by hand: pronuba 6 x 0.7 = 4.2 against its closest rival's 0.6: share 4.2 / 4.8,
    # times its voters' mean 0.7 = 0.6125 (share of all the weight: 4.2 / 6.6 x 0.7 = 0.445)
    assert (row["track_prediction"], row["track_prediction_rank"]) == ("Noctua pronuba", "species")
    assert float(row["track_prediction_prob"]) == pytest.approx(4.2 / 4.8 * 0.7, abs=1e-6)


def run_uncounted(tmp_path, frames, not_moths: set[str], *options: str):
    """moths-track --truth on ``frames``, the boxes of ``not_moths`` left out of the truth;
    (rows of tracks.csv, track_metrics.json)."""
    folder = tmp_path / "night"
    folder.mkdir(exist_ok=True)
    rows, features, truth = write_night(folder, frames)
    truth = [t for t in truth if t[1].removeprefix("garden-") not in not_moths]
    detections, vectors = save(folder, rows, features, truth)
    out = tmp_path / "out" / "tracks.csv"
    assert main([str(detections), "--features", str(vectors), "--output", str(out),
                 "--truth", str(folder / "truth.csv"), "--no-progress", *options]) == 0  # fmt: skip
    return read(out), json.loads((out.parent / "track_metrics.json").read_text())


def test_a_box_over_two_moths_is_reported_not_counted(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    # A and B sit side by side all six frames; the detector also boxes them together (H)
    # in every frame: H holds all of A and all of B, so neither folds into it
    a, b, both = box_at(100, 100), box_at(145, 100), (95.0, 95.0, 190.0, 145.0)
    frames = [[("A", a, "Noctua pronuba", 0.9), ("B", b, "Noctua comes", 0.8),
               ("H", both, "Aglais io", 0.6)] for _ in range(6)]  # fmt: skip
    rows, metrics = run_uncounted(tmp_path, frames, {"H"})
    why = {r["track"]: r["track_uncounted"] for r in rows}
    assert why == {
        "garden/2024-07-01/1": "",
        "garden/2024-07-01/2": "",
        "garden/2024-07-01/3": "over several moths: garden/2024-07-01/1, garden/2024-07-01/2",
    }
    assert len(rows) == 18  # nothing deleted
    assert "3 tracks (1 not counted, see track_uncounted)" in capsys.readouterr().out
    # by hand: pronuba 1 and comes 1, both counted; the box over both not counted
    assert metrics["count_error"] == pytest.approx(0.0)
    assert metrics["individuals_error"] == pytest.approx(0.0)
    rows, metrics = run_uncounted(tmp_path, frames, {"H"}, "--overlap", "off")
    assert {r["track_uncounted"] for r in rows} == {""}
    # every track counts: Aglais io 1 against 0 true, of 2 moths
    assert metrics["count_error"] == pytest.approx(1 / 2)


def test_a_second_box_on_a_moth_is_reported_not_counted(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A sits six frames; in frames 1 to 4 the detector puts a second box G on it, shifted
    # half a box right (G shares 20 x 40 of its 40 x 40 with A: half); C sits 5 pixels
    # right of A (no overlap with A; 15 x 40 with G: 0.375 of either box)
    frames = []
    for f in range(6):
        moths = [("A", box_at(50, 60), "Noctua pronuba", 0.9),
                 ("C", box_at(95, 60), "Noctua comes", 0.8)]  # fmt: skip
        if 1 <= f <= 4:
            moths.append(("G", box_at(70, 60), "Noctua pronuba", 0.7))
        frames.append(moths)
    rows, metrics = run_uncounted(tmp_path, frames, {"G"})
    why = {r["track"]: r["track_uncounted"] for r in rows}
    assert why == {
        "garden/2024-07-01/1": "",
        "garden/2024-07-01/2": "",
        "garden/2024-07-01/3": "second box on a moth: garden/2024-07-01/1",
    }
    assert metrics["count_error"] == pytest.approx(0.0)  # pronuba 1, comes 1
    # a stricter overlap: G (half on A) counts, one pronuba too many of 2 moths
    rows, metrics = run_uncounted(tmp_path, frames, {"G"}, "--overlap", "0.6")
    assert {r["track_uncounted"] for r in rows} == {""}
    assert metrics["count_error"] == pytest.approx(1 / 2)


def test_the_tracks_page_names_every_column() -> None:
    page = (Path(__file__).resolve().parents[1] / "docs/reference/tracks-csv.md").read_text()
    assert [c for c in TRACK_COLUMNS if f"`{c}`" not in page] == []
