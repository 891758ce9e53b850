"""The prediction folder: what it holds, that CSV and arrays agree, reading it back."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import TEST_DATA
from helpers.prediction_folders import model_hierarchy, write_random_folder

from moths_framework.evaluate.folder_reader import PredictionFolder, PredictionFolderError
from moths_framework.evaluate.folder_writer import prediction_csv_columns, write_prediction_folder
from moths_framework.evaluate.reliability import roll_up_ranks
from moths_framework.inference.prediction import OTHER_PREDICTION, roll_up
from moths_framework.output_folders import OutputFolderError, record_written


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    weights = np.exp((logits - logits.max(axis=1, keepdims=True)) / temperature)
    return weights / weights.sum(axis=1, keepdims=True)


def test_csv_and_arrays_agree_with_the_temperature(tmp_path):
    temperature = {"species": 2.5, "genus": 0.7}
    written = write_random_folder(tmp_path / "pred", unreadable=(3,), temperature=temperature)
    rows = _rows(written.path)
    npz = np.load(written.path / "outputs.npz", allow_pickle=False)
    hierarchy = written.hierarchy
    assert list(rows[0]) == prediction_csv_columns(hierarchy.ranks)
    assert npz["paths"].tolist() == [r["path"] for r in rows] == written.paths
    assert npz["features"].dtype == np.float32 and npz["features"].shape == (len(rows), 6)
    for rank in hierarchy.ranks:
        logits = npz[f"logits_{rank}"]
        assert logits.dtype == np.float32
        classes = hierarchy.classes(rank)
        probs = _softmax(logits.astype(np.float64), temperature.get(rank, 1.0))
        for i, row in enumerate(rows):
            assert row[f"true_{rank}"] == classes[npz[f"targets_{rank}"][i]]
            if i == 3:
                assert row[f"pred_{rank}"] == "" and row["error"] == "truncated"
                continue
            assert row[f"pred_{rank}"] == classes[int(np.argmax(logits[i]))]
            assert float(row[f"prob_{rank}"]) == pytest.approx(probs[i].max(), abs=1e-6)
            expected = row[f"pred_{rank}"] == row[f"true_{rank}"]
            assert row[f"correct_{rank}"] == ("true" if expected else "false")
    assert float(npz["temperature_species"]) == 2.5 and float(npz["temperature_group"]) == 1.0


def test_roll_up_columns_are_moths_infer_s_roll_up(tmp_path):
    thresholds = {"species": 0.6, "genus": 0.4, "family": 0.3, "group": 0.9}
    written = write_random_folder(tmp_path / "pred", n=120, signal=1.5, thresholds=thresholds)
    order = written.hierarchy.ranks_by_specificity()
    rows = _rows(written.path)
    answered_ranks = set()
    for row in rows:
        top1 = {rank: (row[f"pred_{rank}"], float(row[f"prob_{rank}"])) for rank in order}
        prediction, rank, prob, confident = roll_up(top1, order, thresholds)
        assert (row["prediction"], row["prediction_rank"]) == (prediction, rank)
        assert float(row["prediction_prob"]) == pytest.approx(prob, abs=1e-6)
        assert row["confident"] == ("true" if confident else "false")
        answered_ranks.add(rank)
    assert len(answered_ranks) >= 3  # the thresholds spread the answers over ranks
    # The vectorised roll-up of moths-evaluate lands on the same ranks.
    folder = PredictionFolder.load(written.path)
    probs = {rank: folder.rank_outputs(rank).prob for rank in order}
    index, _ = roll_up_ranks(probs, order, folder.thresholds)
    assert [order[i] for i in index] == [r["prediction_rank"] for r in rows]


def test_unknown_species_are_other_and_say_so(tmp_path):
    species = ["Zygaena exulans", "Aglais io"]
    written = write_random_folder(tmp_path / "pred", species=species, signal=50.0)
    rows = _rows(written.path)
    assert rows[0]["species"] == "Zygaena exulans"
    assert all(rows[0][f"true_{r}"] == "Other" for r in written.hierarchy.ranks)
    assert rows[0]["prediction"] == OTHER_PREDICTION and rows[0]["correct_species"] == "true"
    assert rows[1]["prediction"] == "Aglais io"


def test_images_by_prediction_links_with_clashing_names(tmp_path):
    hierarchy = model_hierarchy()
    species = ["Aglais io", "Aglais io", "Pieris rapae"]
    paths = [str(tmp_path / "a" / "1.jpg"), str(tmp_path / "b" / "1.jpg"), "/x/Pieris/7.png"]
    logits = {
        rank: np.zeros((3, n), dtype=np.float32) for rank, n in hierarchy.num_classes().items()
    }
    aglais = hierarchy.index("species", "Aglais io")
    logits["species"][:, aglais] = 9.0  # everything called Aglais io
    out = write_prediction_folder(
        tmp_path / "pred",
        hierarchy,
        paths,
        species,
        logits,
        np.zeros((3, 2), np.float32),
        [None] * 3,
        images_by_prediction=True,
    )
    links = sorted(p.name for p in (out / "images" / "Aglais io").iterdir())
    assert links == ["correct 1 [2].jpg", "correct 1.jpg", "wrong 7 (Pieris rapae).png"]
    target = os.readlink(out / "images" / "Aglais io" / "correct 1.jpg")
    assert target == paths[0]


def test_rewriting_replaces_the_folder_and_refuses_foreign_ones(tmp_path):
    first = write_random_folder(tmp_path / "pred", n=10, images_by_prediction=True)
    (first.path / "report.html").write_text("stale")
    record_written(first.path, ["report.html"], "moths-evaluate")  # as moths-evaluate does
    write_random_folder(tmp_path / "pred", n=12)
    assert len(_rows(tmp_path / "pred")) == 12
    assert not (tmp_path / "pred" / "report.html").exists()  # no stale report survives
    assert not (tmp_path / "pred" / "images").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]  # no temporary left over
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "moth.jpg").write_bytes(b"x")
    with pytest.raises(OutputFolderError, match="not a folder moths-predict wrote"):
        write_random_folder(foreign, n=5)
    assert (foreign / "moth.jpg").exists()


def test_writer_rejects_inconsistent_inputs(tmp_path):
    hierarchy = model_hierarchy()
    logits = {r: np.zeros((2, n), np.float32) for r, n in hierarchy.num_classes().items()}
    args = (hierarchy, ["a", "b"], ["Aglais io"] * 2)
    with pytest.raises(ValueError, match="shape"):
        bad = logits | {"genus": np.zeros((2, 3), np.float32)}
        write_prediction_folder(tmp_path / "x", *args, bad, np.zeros((2, 1)), [None] * 2)
    with pytest.raises(ValueError, match="errors"):
        write_prediction_folder(tmp_path / "x", *args, logits, np.zeros((2, 1)), [None])
    with pytest.raises(ValueError, match="temperature"):
        write_prediction_folder(
            tmp_path / "x", *args, logits, np.zeros((2, 1)), [None] * 2, temperature={"genus": 0}
        )
    assert not (tmp_path / "x").exists()


def test_load_reads_back_what_was_written(tmp_path):
    written = write_random_folder(tmp_path / "pred", unreadable=(0, 5))
    folder = PredictionFolder.load(written.path)
    assert folder.hierarchy == written.hierarchy
    assert folder.species.tolist() == written.species
    assert folder.ok.tolist() == [e is None for e in written.errors]
    np.testing.assert_array_equal(folder.logits["genus"], written.logits["genus"])
    assert folder.features().shape == (len(written.paths), 6)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "hierarchy.json").unlink(), "missing hierarchy.json"),
        (lambda p: (p / "outputs.npz").write_bytes(b"garbage"), "outputs.npz: unreadable"),
        (lambda p: (p / "hierarchy.json").write_text("{"), "not a label hierarchy"),
        (lambda p: _truncate_csv(p / "predictions.csv"), "rows but outputs.npz has"),
    ],
)
def test_load_names_what_is_wrong(tmp_path, damage, message):
    written = write_random_folder(tmp_path / "pred", n=8)
    damage(written.path)
    with pytest.raises(PredictionFolderError, match=message):
        PredictionFolder.load(written.path)


def _truncate_csv(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:4]))


# sys.modules["torch"] = None would break scipy, which probes sys.modules for torch
# arrays; a finder that refuses the import blocks torch just as well.
_NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError("torch is blocked in this test")
sys.meta_path.insert(0, NoTorch())
"""


def test_evaluate_and_stats_run_without_torch(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=30, unreadable=(1,))
    code = _NO_TORCH + (
        "from moths_framework.cli import evaluate, stats\n"
        f"assert evaluate.main([{str(written.path)!r}]) == 0\n"
        f"assert stats.main([{str(TEST_DATA / 'source_b')!r}, '--input-size', '32', "
        "'--workers', '1', '--no-progress']) == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "mean: [" in result.stdout
