"""moths-calibrate's steps on arrays: temperature, thresholds, tau, novelty, roll-up."""

from __future__ import annotations

import re

import numpy as np
import pytest

from moths_framework.calibrate.calibration import ModelOutputs, calibrate_outputs
from moths_framework.calibrate.novelty_fit import choose_novelty_detector
from moths_framework.calibrate.rollup import choose_rollup
from moths_framework.calibrate.tau import choose_tau, shot_accuracy, tau_normalise
from moths_framework.calibrate.temperature import fit_temperature
from moths_framework.calibrate.thresholds import choose_thresholds, precision_threshold
from moths_framework.evaluate.reliability import reliability
from moths_framework.hierarchy import LabelHierarchy
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.prediction import softmax
from moths_framework.inference.rollup import consistent_path, rank_probabilities, species_ancestry

HIERARCHY = LabelHierarchy(
    ("species", "genus"),
    {"A a": ["A"], "A b": ["A"], "B c": ["B"], "B d": ["B"], "B e": ["B"]},
)


def overconfident(n: int = 2000, classes: int = 10, accuracy: float = 0.7, seed: int = 0):
    """Logits that put ~all mass on the top-1, which is right only ``accuracy`` of the time."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, n)
    wrong = (targets + rng.integers(1, classes, n)) % classes
    pred = np.where(rng.random(n) < accuracy, targets, wrong)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), pred] += 8.0
    return logits.astype(np.float32), targets


def ece(logits, targets, t):
    probs = softmax(logits, t)
    return reliability(probs.max(axis=1), probs.argmax(axis=1) == targets).ece


def test_temperature_of_an_overconfident_model_is_above_one_and_lowers_ece():
    logits, targets = overconfident()
    t = fit_temperature(logits, targets)
    assert t > 1.0
    assert ece(logits, targets, t) < ece(logits, targets, 1.0) / 2
    # it minimises the NLL: nudging T either way does worse
    from moths_framework.calibrate.temperature import negative_log_likelihood as nll

    assert nll(logits, targets, t) < min(
        nll(logits, targets, t * 0.9), nll(logits, targets, t * 1.1)
    )
    # the same minimum found independently: scipy on an NLL written here in numpy
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    z, rows = logits.astype(np.float64), np.arange(len(targets))

    def independent_nll(temperature: float) -> float:
        scaled = z / temperature
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[rows, targets]))

    best = minimize_scalar(independent_nll, bounds=(0.05, 20.0), method="bounded",
                           options={"xatol": 1e-6})  # fmt: skip
    assert t == pytest.approx(best.x, abs=1e-2)


def test_precision_threshold_is_the_smallest_reaching_the_target():
    prob = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], bool)
    assert precision_threshold(prob, correct, 0.75) == 0.7  # 4 of 5 right
    assert precision_threshold(prob, correct, 0.95) == 0.9
    assert precision_threshold(prob, ~correct, 0.95) is None


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_thresholds_reach_the_target_at_every_rank_or_say_they_cannot(target):
    rng = np.random.default_rng(1)
    n = 500
    prob = {"species": rng.random(n), "genus": rng.random(n)}
    correct = {r: rng.random(n) < 0.3 + 0.7 * p for r, p in prob.items()}  # higher p, more right
    chosen = choose_thresholds(prob, correct, ["species", "genus"], target)
    answered_before = np.zeros(n, bool)
    for c in chosen:
        answers = ~answered_before & (prob[c.rank] >= c.threshold)
        if c.reached:
            assert correct[c.rank][answers].mean() >= target and c.answered == answers.sum()
        else:
            assert c.threshold == 1.0
        answered_before |= answers
    hopeless = choose_thresholds({"species": prob["species"]}, {"species": np.zeros(n, bool)},
                                 ["species"], target)  # fmt: skip
    assert not hopeless[0].reached and hopeless[0].answered == 0


def test_tau_with_power_zero_leaves_the_head_bit_identical_and_shots_use_training_counts():
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(5, 8)).astype(np.float32)
    assert tau_normalise(weight, 0.0) is weight
    normalised = tau_normalise(weight, 1.0)
    np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, rtol=1e-6)
    pred, targets = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])
    shots = shot_accuracy(pred, targets, {0: 150, 1: 50, 2: 3})
    assert shots["many"] == {"classes": 1, "images": 2, "accuracy": 0.5}
    assert shots["medium"]["accuracy"] == 1.0 and shots["few"]["images"] == 1


def test_tau_auto_finds_the_power_that_undoes_a_norm_bias():
    # a head whose common classes got large norms: tau evens them out
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    targets = np.repeat(np.arange(6), 40)
    features = centres[targets] + rng.normal(0, 0.3, (240, 16))
    weight = centres * np.array([8, 4, 1, 1, 1, 1])[:, None]
    choice = choose_tau(features, targets, weight.astype(np.float32), np.zeros(6))
    assert choice.power > 0.5 and choice.f1[choice.power] > choice.f1[0.0]


def clusters(species: int, per: int, dim: int = 16, seed: int = 4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (species, dim))
    labels = np.repeat(np.arange(species), per)
    return centres, labels, centres[labels] + rng.normal(0, 1, (len(labels), dim))


def test_novelty_detector_flags_an_unseen_species_and_keeps_five_percent_of_known():
    centres, labels, features = clusters(8, 30)
    names = np.array([f"s{k}" for k in labels])
    held_out = labels == 7
    choice = choose_novelty_detector(features[~held_out], names[~held_out])
    detector = choice.detector
    assert set(choice.auroc) == {"mahalanobis", "knn"} and choice.auroc[detector.method] >= 0.9
    fresh = centres[labels] + np.random.default_rng(5).normal(0, 1, features.shape)  # new images
    scores = detector.score(fresh)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(held_out, scores) >= 0.9
    assert np.mean(detector.is_novel(scores[~held_out])) <= 0.10
    again = NoveltyDetector.from_json(detector.to_json())  # float16 round trip: same scores
    np.testing.assert_allclose(again.score(fresh), scores)


def test_species_sum_roll_up_is_consistent_and_never_below_its_species():
    ancestry = species_ancestry(HIERARCHY)
    rng = np.random.default_rng(6)
    probs = {r: softmax(rng.normal(0, 2, (50, n))) for r, n in HIERARCHY.num_classes().items()}
    summed = rank_probabilities(probs, "species_sum", ancestry, "species")
    np.testing.assert_allclose(summed["genus"].sum(axis=1), 1.0)
    path = consistent_path(summed, ancestry, HIERARCHY.ranks_by_specificity())
    species, genus = path["species"][0], path["genus"][0]
    assert (ancestry["genus"][species] == genus).all()  # the path's species sits in its genus
    assert (path["genus"][1] >= path["species"][1] - 1e-12).all()
    heads = consistent_path(probs, ancestry, HIERARCHY.ranks_by_specificity())
    assert (ancestry["genus"][heads["species"][0]] == heads["genus"][0]).all()


def test_roll_up_choice_prefers_the_method_with_better_accuracy_at_equal_coverage():
    rng = np.random.default_rng(7)
    n = 300
    targets = {"species": rng.integers(1, 6, n)}
    targets["genus"] = species_ancestry(HIERARCHY)["genus"][targets["species"]]
    species = softmax(np.eye(6)[targets["species"]] * 4 + rng.normal(0, 1, (n, 6)))
    noise = softmax(rng.normal(0, 1, (n, 3)))  # a useless genus head
    choice = choose_rollup({"species": species, "genus": noise}, targets, HIERARCHY)
    assert choice.method == "species_sum"


def test_calibrate_outputs_reports_every_step_and_is_json_ready():
    import json

    centres, labels, features = clusters(5, 40, dim=8)
    names = np.array(HIERARCHY.classes("species")[1:])[labels]
    weight = np.vstack([np.zeros(8), centres]).astype(np.float32)
    logits_species = (features @ weight.T * 3).astype(np.float32)
    genus_targets = species_ancestry(HIERARCHY)["genus"][labels + 1]
    outputs = ModelOutputs(
        {"species": logits_species, "genus": np.eye(3, dtype=np.float32)[genus_targets] * 5},
        {"species": labels + 1, "genus": genus_targets},
        features.astype(np.float32),
        names,
    )
    result = calibrate_outputs(HIERARCHY, outputs, outputs, (weight, np.zeros(6, np.float32)),
                               {k: 30 for k in range(6)}, 0.9, "auto")  # fmt: skip
    report = json.loads(json.dumps(result.report, allow_nan=False))
    assert set(report["thresholds"]) == {"species", "genus"} == set(result.temperature)
    assert report["rollup"]["method"] in ("heads", "species_sum", "fused")
    assert report["tau"]["power"] == result.tau_power is not None
    assert report["novelty"]["method"] in ("mahalanobis", "knn")
    assert report["fit"]["test"]["species"]["ece_after"] is not None


@pytest.mark.parametrize(
    ("rows", "genus_targets", "message"),
    [(5, None, "only 5 readable calibration image(s)"),
     (40, "one", "rank 'genus' cannot be calibrated: every calibration image is 'A'")],
)  # fmt: skip
def test_calibration_images_that_cannot_calibrate_are_refused(rows, genus_targets, message):
    from moths_framework.calibrate.calibration import CalibrationError

    rng = np.random.default_rng(0)
    species = rng.integers(1, 3, rows) if genus_targets == "one" else rng.integers(1, 6, rows)
    genus = species_ancestry(HIERARCHY)["genus"][species]
    names = np.array(HIERARCHY.classes("species"))[species]
    outputs = ModelOutputs(
        {"species": rng.normal(size=(rows, 6)), "genus": rng.normal(size=(rows, 3))},
        {"species": species, "genus": genus},
        rng.normal(size=(rows, 4)),
        names,
    )
    head = (np.zeros((6, 4), np.float32), np.zeros(6, np.float32))
    with pytest.raises(CalibrationError, match=re.escape(message)):
        calibrate_outputs(HIERARCHY, outputs, None, head, {}, 0.9)
