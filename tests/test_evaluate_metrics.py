"""moths-evaluate's numbers: against an independent computation, by hand, and edge cases."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest
from helpers.prediction_folders import write_random_folder

from moths_framework.cli.evaluate import main
from moths_framework.evaluate.folder_reader import PredictionFolder
from moths_framework.evaluate.folder_writer import write_prediction_folder
from moths_framework.evaluate.reliability import coverage_curve, reliability
from moths_framework.hierarchy import LabelHierarchy


def _independent(rows: list[dict[str, str]], rank: str) -> dict:
    """Accuracy and macro metrics of one rank from predictions.csv, in plain Python."""
    rows = [r for r in rows if not r["error"]]
    pairs = [(r[f"true_{rank}"], r[f"pred_{rank}"]) for r in rows]
    true, pred = Counter(t for t, _ in pairs), Counter(p for _, p in pairs)
    hits = Counter(t for t, p in pairs if t == p)
    classes = sorted(set(true) | set(pred))
    precision = {c: hits[c] / pred[c] if pred[c] else 0.0 for c in classes}
    recall = {c: hits[c] / true[c] if true[c] else 0.0 for c in classes}
    f1 = {
        c: 2 * precision[c] * recall[c] / (precision[c] + recall[c])
        if precision[c] + recall[c]
        else 0.0
        for c in classes
    }
    return {
        "support": len(pairs),
        "accuracy": sum(hits.values()) / len(pairs),
        "precision_macro": sum(precision.values()) / len(classes),
        "recall_macro": sum(recall.values()) / len(classes),
        "f1_macro": sum(f1.values()) / len(classes),
        "balanced_accuracy": sum(recall[c] for c in true) / len(true),
        "classes": {c: (true[c], precision[c], recall[c], f1[c]) for c in classes},
    }


def test_metrics_json_matches_an_independent_computation(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=150, signal=1.2, unreadable=(4, 9))
    assert main([str(written.path)]) == 0
    metrics = json.loads((written.path / "metrics.json").read_text())
    with open(written.path / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert (metrics["images"], metrics["errors"], metrics["evaluated"]) == (150, 2, 148)
    npz = np.load(written.path / "outputs.npz")
    readable = np.array([not r["error"] for r in rows])
    for rank in written.hierarchy.ranks:
        got, expected = metrics["ranks"][rank], _independent(rows, rank)
        for key in ("support", "accuracy", "precision_macro", "recall_macro", "f1_macro"):
            assert got[key] == pytest.approx(expected[key], abs=1e-9), (rank, key)
        assert got["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
        for name, (support, precision, recall, f1) in expected["classes"].items():
            entry = got["classes"][name]
            assert entry["support"] == support
            assert (entry["precision"], entry["recall"], entry["f1"]) == pytest.approx(
                (precision, recall, f1)
            )
        logits, targets = npz[f"logits_{rank}"][readable], npz[f"targets_{rank}"][readable]
        top5 = np.argsort(-logits, axis=1)[:, :5]
        assert got["top5_accuracy"] == pytest.approx(np.mean((top5 == targets[:, None]).any(1)))
    assert metrics["ranks"]["species"]["accuracy"] < 1.0  # the check above was not trivial


def test_all_correct_gives_one(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=60, signal=60.0)
    assert main([str(written.path), "--no-report"]) == 0
    metrics = json.loads((written.path / "metrics.json").read_text())
    for rank in written.hierarchy.ranks:
        numbers = metrics["ranks"][rank]
        for key in ("accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro"):
            assert numbers[key] == 1.0, (rank, key)
        assert numbers["balanced_accuracy"] == 1.0
        assert numbers["ece"] < 1e-6
        assert all(c["most_common_wrong_prediction"] is None for c in numbers["classes"].values())
    assert not (written.path / "report.html").exists()


def _hand_built(tmp_path):
    """Species Other, A, B. Rows (true -> predicted): A->A x3, A->B, B->B, B->A, X->Other, X->A."""
    hierarchy = LabelHierarchy(("species", "genus"), {"A a": ("A",), "B b": ("B",)})
    pairs = [("A a", 1)] * 3 + [("A a", 2), ("B b", 2), ("B b", 1), ("X x", 0), ("X x", 1)]
    species = [s for s, _ in pairs]
    logits = {"species": np.zeros((8, 3), np.float32), "genus": np.zeros((8, 3), np.float32)}
    for row, (_, predicted) in enumerate(pairs):
        logits["species"][row, predicted] = 5.0
        logits["genus"][row, predicted] = 5.0
    return write_prediction_folder(
        tmp_path / "pred",
        hierarchy,
        [f"/d/{i}.jpg" for i in range(8)],
        species,
        logits,
        np.zeros((8, 2), np.float32),
        [None] * 8,
    )


def test_hand_built_confusion_gives_the_hand_computed_values(tmp_path):
    out = _hand_built(tmp_path)
    assert main([str(out)]) == 0
    species = json.loads((out / "metrics.json").read_text())["ranks"]["species"]
    # confusion (rows true Other, A, B): [[1, 1, 0], [0, 3, 1], [0, 1, 1]]
    assert species["accuracy"] == pytest.approx(5 / 8)
    assert species["precision_macro"] == pytest.approx((1 + 3 / 5 + 1 / 2) / 3)
    assert species["recall_macro"] == pytest.approx((1 / 2 + 3 / 4 + 1 / 2) / 3)
    assert species["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert species["balanced_accuracy"] == pytest.approx((1 / 2 + 3 / 4 + 1 / 2) / 3)
    assert species["top5_accuracy"] == 1.0
    a = species["classes"]["A a"]
    assert (a["support"], a["predicted"], a["most_common_wrong_prediction"]) == (4, 5, "B b")
    assert species["classes"]["Other"]["most_common_wrong_prediction"] == "A a"
    matrix = (out / "confusion" / "species.csv").read_text().splitlines()
    assert matrix == ["true \\ predicted,Other,A a,B b", "Other,1,1,0", "A a,0,3,1", "B b,0,1,1"]
    other = json.loads((out / "metrics.json").read_text())["other"]
    assert (other["images"], other["called_other"], other["known_called_other"]) == (2, 1, 0)
    assert other["per_species"][0]["species"] == "X x"


def test_reliability_and_coverage_by_hand():
    prob = np.array([0.95, 0.95, 0.55, 0.25])
    correct = np.array([True, False, True, False])
    rel = reliability(prob, correct)
    # bins of 1/15: 0.95 in the last, 0.55 in the 9th, 0.25 in the 4th
    assert rel.count[14] == 2 and rel.count[8] == 1 and rel.count[3] == 1
    assert rel.ece == pytest.approx(2 / 4 * 0.45 + 1 / 4 * 0.45 + 1 / 4 * 0.25)
    curve = coverage_curve(prob, correct, np.array([0.0, 0.5, 0.95, 0.96]))
    np.testing.assert_allclose(curve.coverage, [1.0, 0.75, 0.5, 0.0])
    np.testing.assert_allclose(curve.accuracy[:3], [0.5, 2 / 3, 0.5])
    assert np.isnan(curve.accuracy[3])


def test_unreadable_rows_are_counted_and_left_out(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=40, unreadable=(0, 1, 2))
    folder = PredictionFolder.load(written.path)
    assert int(folder.ok.sum()) == 37
    assert main([str(written.path), "--no-report"]) == 0
    metrics = json.loads((written.path / "metrics.json").read_text())
    assert metrics["errors"] == 3 and metrics["ranks"]["genus"]["support"] == 37


def test_a_folder_of_unreadable_images_still_evaluates(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=3, unreadable=(0, 1, 2))
    assert main([str(written.path)]) == 0
    metrics = json.loads((written.path / "metrics.json").read_text())  # valid JSON: no NaN
    assert metrics["evaluated"] == 0 and metrics["ranks"]["species"]["accuracy"] is None
    assert (written.path / "report.html").stat().st_size > 0


def test_a_rank_named_like_a_path_writes_nothing_outside_the_output(tmp_path, capsys):
    # A shared hierarchy.json (and its outputs.npz) naming a rank "../../genus".
    written = write_random_folder(tmp_path / "pred", n=6)
    hierarchy = written.path / "hierarchy.json"
    hierarchy.write_text(hierarchy.read_text().replace('"genus"', '"../../genus"'))
    with np.load(written.path / "outputs.npz") as npz:
        arrays = {key.replace("_genus", "_../../genus"): npz[key] for key in npz.files}
    np.savez(written.path / "outputs.npz", **arrays)
    out = tmp_path / "a" / "b"
    assert main([str(written.path), "--output", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "rank '../../genus' is refused" in err and err.count("\n") == 1
    assert not list(tmp_path.rglob("genus.csv"))


def test_write_evaluation_refuses_a_rank_that_is_no_file_name(tmp_path):
    from types import SimpleNamespace

    from moths_framework.evaluate.outputs import write_evaluation
    from moths_framework.hierarchy import HierarchyError

    result = SimpleNamespace(confusion=np.eye(2, dtype=np.int64), class_names=["Other", "A"])
    evaluation = SimpleNamespace(ranks={"../x": result}, to_json=dict)
    with pytest.raises(HierarchyError, match=r"rank '\.\./x' is refused"):
        write_evaluation(evaluation, tmp_path / "out", report=False)
    assert not (tmp_path / "x.csv").exists()
