"""A calibrated prediction folder: roll-up as OnnxClassifier gives it, novelty, its AUROC."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.prediction_folders import KNOWN, UNKNOWN, model_hierarchy, write_random_folder

from moths_framework.cli.evaluate import main as evaluate
from moths_framework.evaluate.folder_reader import PredictionFolder
from moths_framework.evaluate.folder_writer import write_prediction_folder
from moths_framework.evaluate.novelty_auroc import seen_in_training, summarise_novelty
from moths_framework.inference.classifier import OnnxClassifier
from moths_framework.inference.metadata import ModelMetadata
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.rollup import ROLLUP_METHODS
from moths_framework.preprocessing import Preprocessing

FEATURES = 6
THRESHOLDS = {"species": 0.5, "genus": 0.6, "family": 0.55, "group": 0.9}
TEMPERATURE = {"species": 1.7, "genus": 0.8}


def detector(threshold: float = 3.0) -> NoveltyDetector:
    """Mahalanobis with identity whitening: the squared distance to the nearest of two means."""
    means = np.array([[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]], dtype=np.float32)
    arrays = {
        "center": np.zeros(FEATURES, np.float32),
        "whitening": np.eye(FEATURES, dtype=np.float32),
    }
    return NoveltyDetector("mahalanobis", threshold, arrays | {"means": means})


class FakeSession:
    """Just enough of an ONNX Runtime session for OnnxClassifier to read a model's metadata."""

    def __init__(self, metadata: ModelMetadata) -> None:
        self._props = metadata.to_props()
        counts = metadata.hierarchy.num_classes()
        self._outputs = [SimpleNamespace(name=r, shape=["N", c]) for r, c in counts.items()]
        self._outputs.append(SimpleNamespace(name="features", shape=["N", FEATURES]))

    def get_modelmeta(self):
        return SimpleNamespace(custom_metadata_map=self._props)

    def get_inputs(self):
        return [SimpleNamespace(name="image", shape=["N", 3, 32, 32])]

    def get_outputs(self):
        return self._outputs


def reference_classifier(rollup: str, novelty: NoveltyDetector) -> OnnxClassifier:
    """What moths-infer would use for a model calibrated with these settings."""
    calibration = {"thresholds": THRESHOLDS, "rollup": {"method": rollup}}
    metadata = ModelMetadata(
        model_hierarchy(), Preprocessing((32, 32)), {}, TEMPERATURE, calibration, novelty.to_json()
    )
    return OnnxClassifier(FakeSession(metadata), "fake.onnx")


def rows_of(folder) -> list[dict[str, str]]:
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("rollup", ROLLUP_METHODS)
def test_calibrated_roll_up_and_novelty_are_onnx_classifier_s(tmp_path, rollup):
    novelty = detector().rounded()
    written = write_random_folder(
        tmp_path / "pred", n=150, signal=1.2, unreadable=(4,), temperature=TEMPERATURE,
        thresholds=THRESHOLDS, rollup=rollup, novelty=novelty,
    )  # fmt: skip
    classifier = reference_classifier(rollup, novelty)
    rows = rows_of(written.path)
    npz = np.load(written.path / "outputs.npz", allow_pickle=False)
    features = npz["features"]
    assert list(rows[0])[-3:] == ["novelty_score", "novel", "error"]
    ranks, answers = written.hierarchy.ranks, set()
    for i, row in enumerate(rows):
        if i == 4:  # unreadable: no answer, no score
            assert row["prediction"] == row["novelty_score"] == row["novel"] == ""
            assert np.isnan(npz["novelty_score"][i])
            continue
        probs = classifier.probabilities_from_logits(
            {r: written.logits[r][i : i + 1] for r in ranks}
        )
        score = float(classifier.novelty_scores(features[i : i + 1])[0])
        expected = classifier.prediction_from_probabilities(
            row["path"], {r: p[0] for r, p in probs.items()}, novelty_score=score
        )
        assert row["prediction"] == expected.prediction
        assert row["prediction_rank"] == expected.prediction_rank
        assert float(row["prediction_prob"]) == pytest.approx(expected.prediction_prob, abs=1e-6)
        assert row["confident"] == str(expected.confident).lower()
        assert float(row["novelty_score"]) == pytest.approx(score, abs=1e-6)
        assert row["novel"] == str(expected.novel).lower()
        answers.add((expected.prediction_rank, expected.confident))
    assert len(answers) >= 3  # the answers land at several ranks, confident or not
    assert str(npz["rollup"]) == rollup and float(npz["novelty_threshold"]) == novelty.threshold
    folder = PredictionFolder.load(written.path)
    assert folder.rollup == rollup and folder.novelty_threshold == novelty.threshold
    # moths-evaluate's roll-up counts are the CSV's
    assert evaluate([str(written.path), "--no-report"]) == 0
    metrics = json.loads((written.path / "metrics.json").read_text())
    counted = {rank: r["answered"] for rank, r in metrics["roll_up"]["answered"].items()}
    assert counted == {r: sum(row["prediction_rank"] == r for row in rows) for r in ranks}
    assert metrics["roll_up"]["method"] == rollup


def test_an_uncalibrated_folder_has_no_novelty_and_says_so(tmp_path):
    written = write_random_folder(tmp_path / "pred", n=30)
    assert "novelty_score" not in rows_of(written.path)[0]
    folder = PredictionFolder.load(written.path)
    assert folder.rollup is None and folder.novelty_score is None
    assert evaluate([str(written.path)]) == 0
    assert json.loads((written.path / "metrics.json").read_text())["novelty"] is None
    assert "No novelty scores" in (written.path / "report.html").read_text()


def test_novelty_auroc_on_species_the_model_never_saw(tmp_path, capsys):
    """Hand-built: unseen species far from the two means, trained species near them."""
    hierarchy = model_hierarchy()
    never_seen = "Vanessa atalanta"  # not a class and not bundled
    bundled = "Biston betularia"  # too few images: trained as Other, so seen
    species = [*KNOWN[:2] * 5, bundled, bundled, never_seen, never_seen, never_seen]
    assert list(seen_in_training(hierarchy, np.array(species))) == [True] * 12 + [False] * 3
    scores = np.array([0.5] * 9 + [4.0] + [0.1, 0.2] + [5.0, 6.0, 2.0])  # one trained above
    summary = summarise_novelty(hierarchy, np.array(species), scores, threshold=3.0)
    # unseen 5.0 and 6.0 score above all 12 trained images, 2.0 above 11 of them (not 4.0)
    assert summary.auroc == pytest.approx((12 + 12 + 11) / 36)
    assert (summary.seen, summary.unseen, summary.unseen_species) == (12, 3, [never_seen])
    assert summary.seen_flagged == pytest.approx(1 / 12)
    assert summary.unseen_flagged == pytest.approx(2 / 3)

    # through a folder: features placed so that the detector gives exactly these scores
    features = np.zeros((len(species), FEATURES), np.float32)
    features[:, 0] = 1.0 + np.sqrt(scores)  # squared distance `score` to the nearer mean
    logits = {
        r: np.zeros((len(species), c), np.float32) for r, c in hierarchy.num_classes().items()
    }
    paths = [f"/data/{s}/{i}.jpg" for i, s in enumerate(species)]
    out = tmp_path / "pred"
    write_prediction_folder(
        out, hierarchy, paths, species, logits, features, [None] * len(species), novelty=detector()
    )
    assert evaluate([str(out)]) == 0
    expected = "novelty: AUROC 0.9722 (3 images of 1 species never seen, 12 of trained ones)"
    assert expected in capsys.readouterr().out
    novelty = json.loads((out / "metrics.json").read_text())["novelty"]
    assert novelty["auroc"] == pytest.approx((12 + 12 + 11) / 36)
    assert novelty["seen_flagged"] == pytest.approx(1 / 12)
    report = (out / "report.html").read_text()
    assert "never saw" in report and never_seen in report


def test_no_unseen_species_is_said_plainly(tmp_path):
    species = [KNOWN[0], KNOWN[1], UNKNOWN[0]] * 4  # UNKNOWN[0] is bundled: seen
    written = write_random_folder(tmp_path / "pred", species=species, novelty=detector())
    assert evaluate([str(written.path)]) == 0
    novelty = json.loads((written.path / "metrics.json").read_text())["novelty"]
    assert novelty["auroc"] is None and novelty["unseen"] == 0
    assert novelty["note"].startswith("no images of species the model never saw")
    assert "no images of species the model never saw" in (written.path / "report.html").read_text()


def test_mahalanobis_score_keeps_its_precision_far_from_the_origin():
    """Features and means far from the centre: the expanded square must not cancel."""
    rng = np.random.default_rng(0)
    means = (300.0 + rng.normal(0, 1, (5, FEATURES))).astype(np.float32)
    arrays = {
        "center": np.zeros(FEATURES, np.float32),
        "whitening": np.eye(FEATURES, dtype=np.float32),
    }
    found = NoveltyDetector("mahalanobis", 1.0, arrays | {"means": means})
    features = (means[rng.integers(0, 5, 200)] + rng.normal(0, 0.05, (200, FEATURES))).astype(
        np.float32
    )
    diff = features[:, None, :].astype(np.float64) - means[None].astype(np.float64)
    exact = (diff**2).sum(axis=2).min(axis=1)
    np.testing.assert_allclose(found.score(features), exact, rtol=1e-9)
