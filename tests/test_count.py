"""moths-count: tracks.csv to occurrences.csv, individuals (tracks) per taxon per night.

The tracks.csv fixtures are written by hand; every expected count below was counted
by hand from them, not by the code under test.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from moths_framework.cli.count import main

HEADER = (
    "path,detection,detection_class,crop,prediction_prob,"
    "deployment,night,timestamp,track,track_prediction,track_prediction_rank,"
    "track_prediction_prob,track_confident"
)
# deployment A, night 2024-07-01: tracks A/1 and A/2 are Noctua pronuba (3 + 2 rows),
# A/3 stopped at the genus Agrotis (1 row), A/4 is Other (2 rows);
# night 2024-07-02 (after midnight, still that night): A/5 Noctua pronuba (1 row);
# the next night, 2024-07-02: A/6 Noctua pronuba.
# deployment B: B/1 said Noctua pronuba but 2 of its 3 crops are a non-moth class.
NP, AG, OT = "Noctua pronuba", "Agrotis", "Other (not one of the trained species)"
D1, D2 = "2024-07-01", "2024-07-02"
# path, detection_class, crop, prediction_prob, deployment, night, time, track, answer, rank, prob
ROWS = [
    ("a/f1.jpg", "moth", "crops/1_1.jpg", 0.80, "A", D1, f"{D1}T22:00", "A/1", NP, "species", 0.85),
    ("a/f2.jpg", "moth", "crops/2_1.jpg", 0.95, "A", D1, f"{D1}T22:05", "A/1", NP, "species", 0.85),
    ("a/f2.jpg", "moth", "crops/2_2.jpg", 0.70, "A", D1, f"{D1}T22:05", "A/2", NP, "species", 0.65),
    ("a/f3.jpg", "moth", "crops/3_1.jpg", 0.90, "A", D1, f"{D1}T22:10", "A/1", NP, "species", 0.85),
    ("a/f3.jpg", "moth", "crops/3_2.jpg", 0.60, "A", D1, f"{D1}T22:10", "A/2", NP, "species", 0.65),
    ("a/f3.jpg", "moth", "crops/3_3.jpg", 0.55, "A", D1, f"{D1}T22:10", "A/3", AG, "genus", 0.70),
    ("a/f4.jpg", "moth", "crops/4_1.jpg", 0.40, "A", D1, f"{D2}T01:30", "A/4", OT, "species", 0.9),
    ("a/f5.jpg", "moth", "crops/5_1.jpg", 0.45, "A", D1, f"{D2}T01:35", "A/4", OT, "species", 0.9),
    ("a/f6.jpg", "moth", "", 0.99, "A", D1, f"{D2}T03:00", "A/5", NP, "species", 0.99),
    ("a/g1.jpg", "moth", "crops/g_1.jpg", 0.75, "A", D2, f"{D2}T23:00", "A/6", NP, "species", 0.75),
    ("b/f1.jpg", "non-moth", "crops/b1.jpg", .5, "B", D1, f"{D1}T21:00", "B/1", NP, "species", 0.5),
    ("b/f2.jpg", "moth", "crops/b2.jpg", 0.5, "B", D1, f"{D1}T21:01", "B/1", NP, "species", 0.5),
    ("b/f3.jpg", "non-moth", "crops/b3.jpg", .5, "B", D1, f"{D1}T21:02", "B/1", NP, "species", 0.5),
]  # fmt: skip
TRACKS = (
    "\n".join([HEADER, *(",".join([r[0], "1", *map(str, r[1:]), "true"]) for r in ROWS)]) + "\n"
)

# Counted by hand: (deployment, night, taxon, rank, individuals, detections,
# first_seen, last_seen, best_crop, mean_prob)
EXPECTED = [
    ("A", "2024-07-01", "Noctua pronuba", "species", 3, 6,
     "2024-07-01T22:00", "2024-07-02T03:00", "a/f6.jpg", (0.85 + 0.65 + 0.99) / 3),
    ("A", "2024-07-01", "Agrotis", "genus", 1, 1,
     "2024-07-01T22:10", "2024-07-01T22:10", "crops/3_3.jpg", 0.70),
    ("A", "2024-07-01", "Other (not one of the trained species)", "species", 1, 2,
     "2024-07-02T01:30", "2024-07-02T01:35", "crops/5_1.jpg", 0.90),
    ("A", "2024-07-02", "Noctua pronuba", "species", 1, 1,
     "2024-07-02T23:00", "2024-07-02T23:00", "crops/g_1.jpg", 0.75),
    ("B", "2024-07-01", "non-moth", "", 1, 3,
     "2024-07-01T21:00", "2024-07-01T21:02", "crops/b1.jpg", 0.50),
]  # fmt: skip

DEPLOYMENTS = """deployment,latitude,longitude,trap_type
A,52.1,5.2,LepiLED
B,-33.5,151.25,mercury vapour
"""


@pytest.fixture
def tracks(tmp_path: Path) -> Path:
    path = tmp_path / "tracks.csv"
    path.write_text(TRACKS, encoding="utf-8")
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_counts_are_the_hand_counts(tracks, tmp_path, capsys) -> None:
    out = tmp_path / "occurrences.csv"
    assert main([str(tracks), "--output", str(out)]) == 0
    rows = read(out)
    got = [
        (r["deployment"], r["night"], r["taxon"], r["taxon_rank"], int(r["individuals"]),
         int(r["detections"]), r["first_seen"], r["last_seen"], r["best_crop"],
         float(r["mean_prob"]))
        for r in rows
    ]  # fmt: skip
    assert [g[:-1] for g in got] == [e[:-1] for e in EXPECTED]
    assert [g[-1] for g in got] == pytest.approx([e[-1] for e in EXPECTED], abs=1e-5)
    assert "latitude" not in rows[0]  # no --deployments
    line = capsys.readouterr().out
    assert line.startswith(
        "moths-count: 7 individuals of 2 taxa in 13 detections, 3 nights at 2 deployments "
        "(1 Other, 1 non-moth, 0 without an answer); wrote "
    )


def test_deployments_give_each_row_its_place(tracks, tmp_path) -> None:
    deployments = tmp_path / "deployments.csv"
    deployments.write_text(DEPLOYMENTS, encoding="utf-8")
    out = tmp_path / "occurrences.csv"
    assert main([str(tracks), "--deployments", str(deployments), "--output", str(out)]) == 0
    places = {(r["deployment"], r["latitude"], r["longitude"], r["trap_type"]) for r in read(out)}
    assert places == {("A", "52.1", "5.2", "LepiLED"), ("B", "-33.5", "151.25", "mercury vapour")}


def test_run_json_names_the_tracks_it_counted(tracks, tmp_path) -> None:
    out = tmp_path / "occurrences.csv"
    assert main([str(tracks), "--output", str(out)]) == 0
    record = json.loads((tmp_path / "occurrences.csv.run.json").read_text(encoding="utf-8"))
    assert record["command"] == "moths-count"
    assert record["inputs"][0]["path"] == str(tracks)


def test_a_track_without_an_answer_counts_apart(tmp_path, capsys) -> None:
    boxes_only = "\n".join(
        ["path,deployment,night,timestamp,track,track_prediction,track_prediction_rank,"
         "track_prediction_prob,detection_score",
         "f1.jpg,A,2024-07-01,2024-07-01T22:00:00,A/1,,,,0.9",
         "f2.jpg,A,2024-07-01,2024-07-01T22:01:00,A/1,,,,0.8",
         "f2.jpg,A,2024-07-01,2024-07-01T22:01:00,A/2,,,,0.7"]
    )  # fmt: skip
    tracks = tmp_path / "tracks.csv"
    tracks.write_text(boxes_only + "\n", encoding="utf-8")
    out = tmp_path / "occurrences.csv"
    assert main([str(tracks), "--output", str(out)]) == 0
    [row] = read(out)
    assert (row["taxon"], row["individuals"], row["detections"]) == ("", "2", "3")
    assert row["best_crop"] == "f1.jpg"  # no crops: the frame of the surest box
    assert "(0 Other, 0 non-moth, 2 without an answer)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,track\nf.jpg,1\n", "lacks column(s) deployment, night, timestamp, track_pred"),
        (HEADER + "\nf,1,moth,,0.5,A,2024-07-01,yesterday,A/1,X,species,0.5,true\n",
         "timestamp 'yesterday' is not ISO 8601"),
        (HEADER + "\nf,1,moth,,0.5,A,2024-07-01,2024-07-01T22:00:00,A/1,X,species,2,true\n",
         "track_prediction_prob 2.0 is outside 0..1"),
    ],
)  # fmt: skip
def test_bad_tracks_csv_is_one_line_exit_2(tmp_path, capsys, content, message) -> None:
    tracks = tmp_path / "tracks.csv"
    tracks.write_text(content, encoding="utf-8")
    assert main([str(tracks), "--output", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o.csv").exists()


def test_unlisted_deployment_is_exit_2(tracks, tmp_path, capsys) -> None:
    deployments = tmp_path / "deployments.csv"
    deployments.write_text("deployment,latitude,longitude\nA,52.1,5.2\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    assert main([str(tracks), "--deployments", str(deployments), "--output", str(out)]) == 2
    assert "deployment 'B' of tracks.csv is not in the deployments table" in capsys.readouterr().err


def test_a_track_the_moth_filter_stopped_is_a_non_moth(tmp_path, capsys) -> None:
    header = (
        "path,filter_class,prediction,deployment,night,timestamp,track,track_prediction,"
        "track_prediction_rank,track_prediction_prob"
    )
    # L/1: the filter stopped 2 of its 3 crops (a leaf); L/2: it stopped 1 of 3 (a moth)
    rows = [
        "f1.jpg,leaf,,L,2024-07-01,2024-07-01T22:00:00,L/1,Aus alpha,species,0.9",
        "f2.jpg,leaf,,L,2024-07-01,2024-07-01T22:01:00,L/1,Aus alpha,species,0.9",
        "f3.jpg,moth,Aus alpha,L,2024-07-01,2024-07-01T22:02:00,L/1,Aus alpha,species,0.9",
        "f1.jpg,moth,Aus alpha,L,2024-07-01,2024-07-01T22:00:00,L/2,Aus alpha,species,0.8",
        "f2.jpg,nonmoth,,L,2024-07-01,2024-07-01T22:01:00,L/2,Aus alpha,species,0.8",
        "f3.jpg,moth,Aus alpha,L,2024-07-01,2024-07-01T22:02:00,L/2,Aus alpha,species,0.8",
    ]
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    out = tmp_path / "occurrences.csv"
    assert main([str(tracks), "--output", str(out)]) == 0
    got = {(r["taxon"], r["taxon_rank"], r["individuals"]) for r in read(out)}
    assert got == {("non-moth (leaf)", "", "1"), ("Aus alpha", "species", "1")}
    assert "(0 Other, 1 non-moth, 0 without an answer)" in capsys.readouterr().out


def test_tracks_moths_track_did_not_count_are_listed_apart(tmp_path, capsys) -> None:
    header = (
        "path,crop,prediction_prob,deployment,night,timestamp,track,track_prediction,"
        "track_prediction_rank,track_prediction_prob,track_uncounted"
    )
    over = "over several moths: U/2024-07-01/1, U/2024-07-01/2"
    second = "second box on a moth: U/2024-07-01/1"
    # U/1 Aus alpha (2 rows) and U/2 Bus beta (1 row) count; U/3, a box over both, answered
    # at the genus Aus (2 rows), and U/4, a second box on U/1 (1 row), do not
    rows = [
        "f1.jpg,c/1.jpg,0.9,U,2024-07-01,2024-07-01T22:00:00,U/2024-07-01/1,Aus alpha,species,0.9,",
        "f2.jpg,c/2.jpg,0.8,U,2024-07-01,2024-07-01T22:01:00,U/2024-07-01/1,Aus alpha,species,0.9,",
        "f1.jpg,c/3.jpg,0.7,U,2024-07-01,2024-07-01T22:00:00,U/2024-07-01/2,Bus beta,species,0.7,",
        f'f1.jpg,c/4.jpg,0.4,U,2024-07-01,2024-07-01T22:00:00,U/2024-07-01/3,Aus,genus,0.5,"{over}"',
        f'f2.jpg,c/5.jpg,0.6,U,2024-07-01,2024-07-01T22:01:00,U/2024-07-01/3,Aus,genus,0.5,"{over}"',
        f"f2.jpg,c/6.jpg,0.5,U,2024-07-01,2024-07-01T22:01:00,U/2024-07-01/4,Aus alpha,species,"
        f"0.5,{second}",
    ]
    tracks = tmp_path / "tracks.csv"
    tracks.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    out = tmp_path / "occurrences.csv"
    listed = tmp_path / "uncounted_tracks.csv"
    assert main([str(tracks), "--output", str(out)]) == 0
    got = {(r["taxon"], r["individuals"], r["detections"]) for r in read(out)}
    assert got == {("Aus alpha", "1", "2"), ("Bus beta", "1", "1")}
    assert [list(r.values()) for r in read(listed)] == [
        ["U", "2024-07-01", "U/2024-07-01/3", over, "Aus", "genus", "2",
         "2024-07-01T22:00:00", "2024-07-01T22:01:00", "c/5.jpg"],
        ["U", "2024-07-01", "U/2024-07-01/4", second, "Aus alpha", "species", "1",
         "2024-07-01T22:01:00", "2024-07-01T22:01:00", "c/6.jpg"],
    ]  # fmt: skip
    captured = capsys.readouterr()
    assert captured.out.startswith("moths-count: 2 individuals of 2 taxa in 6 detections")
    assert (
        "moths-count: 2 track(s) not counted as individuals (1 over several moths, 1 second "
        f"box on a moth), listed in {listed}"
    ) in captured.err
    assert (tmp_path / "uncounted_tracks.csv.run.json").exists()
    # counted again with every track counted: the old list goes
    tracks.write_text("\n".join([header, *rows[:3]]) + "\n", encoding="utf-8")
    assert main([str(tracks), "--output", str(out)]) == 0
    assert not listed.exists() and not (tmp_path / "uncounted_tracks.csv.run.json").exists()


def test_counting_and_the_archive_need_only_the_standard_library() -> None:
    # moths-count and moths-dwc run on the base install: no numpy, torch or ONNX Runtime
    code = (
        "import sys; before = set(sys.modules)\n"
        "import moths_framework.cli.count, moths_framework.cli.dwc\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(n for n in new if n not in sys.stdlib_module_names"
        " and not n.startswith('_')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['moths_framework']"
