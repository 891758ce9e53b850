"""Nothing deleted that we did not write: a command replaces or overwrites only what it
wrote itself, and a temporary a killed run left behind never breaks a later run. No torch."""

from __future__ import annotations

import csv
import os

import pytest
from helpers.prediction_folders import write_random_folder

from moths_framework.cli.evaluate import main as evaluate
from moths_framework.inference.prediction import Prediction
from moths_framework.inference.writers import PredictionWriter


def _rows(folder) -> list[dict[str, str]]:
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_a_folder_with_predictions_csv_and_a_user_s_source_is_not_replaced(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "predictions.csv").write_text("path\n")
    (project / "source.py").write_text("print('mine')\n")
    with pytest.raises(ValueError, match="moths-predict") as error:
        write_random_folder(project, n=5)
    assert str(project) in str(error.value) and "\n" not in str(error.value)
    assert sorted(p.name for p in project.iterdir()) == ["predictions.csv", "source.py"]
    assert (project / "source.py").read_text() == "print('mine')\n"


def test_a_file_added_to_a_prediction_folder_blocks_its_replacement(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=5, images_by_prediction=True)
    (written.path / "images" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        write_random_folder(tmp_path / "pred", n=6)
    assert (written.path / "images" / "notes.txt").read_text() == "mine"
    assert len(_rows(written.path)) == 5


def test_evaluate_s_files_do_not_block_a_new_prediction(tmp_path, capsys):
    written = write_random_folder(tmp_path / "pred", n=20)
    assert evaluate([str(written.path), "--no-report"]) == 0
    assert (written.path / "metrics.json").is_file()
    write_random_folder(tmp_path / "pred", n=7)
    assert len(_rows(written.path)) == 7
    assert not (written.path / "metrics.json").exists()  # no stale metrics survive


def test_an_empty_folder_may_be_used(tmp_path):
    (tmp_path / "pred").mkdir()
    write_random_folder(tmp_path / "pred", n=4)
    assert len(_rows(tmp_path / "pred")) == 4


def test_a_killed_run_s_temporaries_with_the_same_pid_neither_break_nor_vanish(
    tmp_path, monkeypatch
):
    """In a container every run is PID 1: a name made of the PID alone is not unique."""
    write_random_folder(tmp_path / "pred", n=5)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    stale = [tmp_path / ".pred.tmp-1", tmp_path / ".pred.old-1"]
    for folder in stale:
        folder.mkdir()
        (folder / "predictions.csv").write_text("another run's\n")
    write_random_folder(tmp_path / "pred", n=6)
    assert len(_rows(tmp_path / "pred")) == 6
    for folder in stale:
        assert (folder / "predictions.csv").read_text() == "another run's\n"


def test_a_killed_writer_s_temporary_with_the_same_pid_does_not_break_a_write(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(os, "getpid", lambda: 1)
    stale = tmp_path / ".predictions.csv.1.tmp"
    stale.write_text("half of a killed run\n")
    output = tmp_path / "predictions.csv"
    with PredictionWriter(output, ["species"]) as writer:
        writer.write(Prediction("a.jpg", error="cannot read a.jpg"))
    assert "cannot read a.jpg" in output.read_text()
    assert stale.read_text() == "half of a killed run\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name, "predictions.csv"]


def test_evaluate_does_not_overwrite_a_file_it_did_not_write(tmp_path, capsys):
    written = write_random_folder(tmp_path / "pred", n=20)
    out = tmp_path / "reports"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}\n')
    args = [str(written.path), "--output", str(out), "--no-report"]
    assert evaluate(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("moths-evaluate: error: ") and err.count("\n") == 1
    assert str(out / "metrics.json") in err
    assert (out / "metrics.json").read_text() == '{"mine": 1}\n'
    assert not (out / "confusion").exists()  # refused before writing anything
    (out / "metrics.json").unlink()
    assert evaluate(args) == 0
    assert evaluate(args) == 0  # its own files it overwrites


def test_the_old_folder_keeps_what_appeared_in_it_after_the_check(tmp_path, monkeypatch, caplog):
    """A file dropped into the folder between the check and the swap is not deleted with
    the old predictions: it stays in the folder moved aside, with a warning."""
    from moths_framework import output_folders

    written = write_random_folder(tmp_path / "pred", n=5)
    check = output_folders.check_replaceable_folder

    def late_file(folder, command, option="--output"):
        check(folder, command, option)
        (written.path / "late.txt").write_text("mine")

    monkeypatch.setattr(output_folders, "check_replaceable_folder", late_file)
    write_random_folder(tmp_path / "pred", n=6)
    assert len(_rows(tmp_path / "pred")) == 6
    (aside,) = [p for p in tmp_path.iterdir() if p.name != "pred"]
    assert sorted(p.name for p in aside.iterdir()) == ["late.txt"]
    assert "kept" in caplog.text and str(aside) in caplog.text
