"""CSV formula injection: text cells starting = + - @ TAB CR are quoted, and read back."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers.image_samples import jpeg

from moths_framework.csv_cells import from_spreadsheet_safe, spreadsheet_safe
from moths_framework.hierarchy import LabelHierarchy

RISKY = ['=HYPERLINK("http://x","y")', "+1", "-Noctua", "@SUM(A1)", "\tx", "\r=x"]
# Already quoted, or a quote that is part of the name: one more quote, so the read is exact.
QUOTED = ["'=x", "''+1", "'", "'abc", "it's"]
PLAIN = ["Aglais io", "", "x=1", "/data/-1.jpg", "1.5", " =x"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("text", RISKY + QUOTED + PLAIN)
def test_a_cell_reads_back_as_written(text):
    safe = spreadsheet_safe(text)
    assert from_spreadsheet_safe(safe) == text
    if text in RISKY:
        assert safe == "'" + text
    if text in PLAIN:
        assert safe == text


def test_prepare_quotes_species_in_manifest_and_the_manifest_source_reads_them_back(tmp_path):
    from moths_framework.data.prepare import prepare_sources
    from moths_framework.data.sources import ImageFolder, Manifest

    source = tmp_path / "source"
    names = ["=cmd|'calc'!A0", "-Noctua", "@Pieris", "+Aglais", "Aglais io"]
    for i, name in enumerate(names):
        (source / name).mkdir(parents=True)
        (source / name / "1.jpg").write_bytes(jpeg(seed=900 + i))
    (source / "-Noctua" / "=2.txt").write_bytes(b"x")
    out = tmp_path / "out"
    prepare_sources(out, [source], workers=1, progress=False)
    rows = read_rows(out / "manifest.csv")
    assert sorted(row["species"] for row in rows) == sorted(spreadsheet_safe(n) for n in names)
    assert {row["species"] for row in rows} >= {"'-Noctua", "'=cmd|'calc'!A0"}
    for column in ("path", "source"):
        assert not [row[column] for row in rows if row[column][0] in "=+-@\t\r"]
    samples = Manifest(out / "manifest.csv").samples()
    assert sorted(s.species for s in samples) == sorted(names)
    assert {s.species for s in samples} == {s.species for s in ImageFolder(source).samples()}
    assert all(s.path.is_file() for s in samples)
    assert read_rows(out / "rejected.csv") == [
        {"source": str(source / "-Noctua" / "=2.txt"), "reason": "unsupported-extension"}
    ]


def _hierarchy() -> LabelHierarchy:
    return LabelHierarchy(("species", "genus"), {"=A a": ("-A",), "B b": ("B",)})


def test_predictions_csv_quotes_text_cells_but_never_numbers(tmp_path):
    from moths_framework.cli.evaluate import main as evaluate
    from moths_framework.evaluate.folder_writer import write_prediction_folder

    hierarchy = _hierarchy()
    paths, species = ["=1.jpg", "-2.jpg", "@3.jpg", "4.jpg"], ["=A a", "=A a", "B b", "+X x"]
    logits = {
        "species": np.tile(np.array([[-3.0, 5.0, -1.5]], np.float32), (4, 1)),
        "genus": np.tile(np.array([[-3.0, 5.0, -1.5]], np.float32), (4, 1)),
    }
    out = write_prediction_folder(
        tmp_path / "pred", hierarchy, paths, species, logits, np.zeros((4, 2), np.float32),
        [None, None, None, "-unreadable"],
    )  # fmt: skip
    rows = read_rows(out / "predictions.csv")
    assert [r["path"] for r in rows] == ["'=1.jpg", "'-2.jpg", "'@3.jpg", "4.jpg"]
    assert [r["species"] for r in rows] == ["'=A a", "'=A a", "B b", "'+X x"]
    assert rows[0]["pred_species"] == rows[0]["prediction"] == "'=A a"
    assert rows[0]["true_genus"] == rows[0]["pred_genus"] == "'-A"
    assert rows[3]["error"] == "'-unreadable"
    assert float(rows[0]["prob_species"]) > 0.9 and rows[0]["prob_species"][0] == "0"
    for row, path, name in zip(rows, paths, species, strict=True):
        assert (from_spreadsheet_safe(row["path"]), from_spreadsheet_safe(row["species"])) == (
            path,
            name,
        )
    assert evaluate([str(out), "--no-report"]) == 0
    confusion = (out / "confusion" / "species.csv").read_text().splitlines()
    assert confusion[0] == "true \\ predicted,Other,'=A a,B b" and confusion[2][:6] == "'=A a,"


def test_infer_csv_quotes_text_cells_but_never_numbers(tmp_path):
    from moths_framework.inference.prediction import Prediction
    from moths_framework.inference.writers import PredictionWriter

    output = tmp_path / "out.csv"
    answer = Prediction(
        "=cmd.jpg",
        top_k={"species": [("-A a", 0.75)], "genus": [("@A", 0.5)]},
        prediction="-A a",
        prediction_rank="species",
        prediction_prob=0.75,
        confident=True,
        novelty_score=-1.5,
        novel=False,
    )
    with PredictionWriter(output, ["species", "genus"], novelty=True) as writer:
        writer.write(answer)
        writer.write(Prediction("+b.jpg", error="=cannot read"))
    first, second = read_rows(output)
    assert (first["path"], first["species"], first["genus"]) == ("'=cmd.jpg", "'-A a", "'@A")
    assert (first["prediction"], first["prediction_rank"]) == ("'-A a", "species")
    assert (first["species_prob"], first["novelty_score"]) == ("0.750000", "-1.500000")
    assert (second["path"], second["error"]) == ("'+b.jpg", "'=cannot read")


def test_split_csv_quotes_and_calibrate_reads_it_back(tmp_path):
    from moths_framework.calibrate.run import _split_rows
    from moths_framework.data.sources import Sample
    from moths_framework.data.split import stratified_split, write_split_csv

    samples = [Sample(Path(f"-data/=A a/{i}.jpg"), "=A a") for i in range(4)]
    samples += [Sample(Path(f"data/B b/{i}.jpg"), "B b") for i in range(4)]
    path = write_split_csv(tmp_path, samples, stratified_split(samples, 0.25, 1))
    assert read_rows(path)[0]["species"] == "'=A a"
    rows = _split_rows(path)
    assert [(r["path"], r["species"]) for r in rows] == [(str(s.path), s.species) for s in samples]
