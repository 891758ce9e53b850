"""moths-evaluate on a detector's prediction folder, against answers worked out by hand
and against an independent 101-point AP written here from COCO's definition."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from helpers.browser import render
from helpers.paths import REPO
from helpers.prediction_folders import write_random_folder
from PIL import Image

from moths_framework.cli.evaluate import main
from moths_framework.evaluate.detection_evaluation import evaluate_detection_folder
from moths_framework.evaluate.detection_folder import (
    FrameBoxes,
    read_detection_folder,
    write_detection_folder,
)
from moths_framework.evaluate.detection_outputs import counts_csv
from moths_framework.evaluate.frame_drawings import PREDICTED_COLOUR, TRUE_COLOUR, frame_png

CLASSES = ["moth", "beetle"]


def _frame(path, boxes, labels, scores=None, size=(200, 100), error=""):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = None if scores is None else np.asarray(scores, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    return FrameBoxes(path, size[0], size[1], boxes, labels, scores, error)


def _folder(tmp_path, truth, predicted, threshold=0.5, name="pred"):
    return write_detection_folder(
        tmp_path / name, CLASSES, truth, predicted, score_threshold=threshold, metadata={}
    )


def _evaluate(folder):
    return evaluate_detection_folder(read_detection_folder(folder))


TRUE_A = [[10, 10, 40, 40], [50, 10, 90, 50], [100, 20, 150, 80]]
TRUE_B = [[5, 5, 25, 25], [60, 60, 80, 90]]


def _perfect_frames():
    truth = [
        _frame("a.jpg", TRUE_A, [1, 1, 2]),
        _frame("b.jpg", TRUE_B, [2, 1]),
        _frame("empty.jpg", [], []),
        _frame("broken.jpg", [[0, 0, 10, 10]], [1]),
    ]
    predicted = [
        _frame("a.jpg", TRUE_A, [1, 1, 2], [0.9, 0.8, 0.7]),
        _frame("b.jpg", TRUE_B, [2, 1], [0.95, 0.6]),
        _frame("empty.jpg", [], [], []),
        _frame("broken.jpg", [], [], [], error="truncated"),
    ]
    return truth, predicted


def test_perfect_predictions_score_one_and_count_exactly(tmp_path, capsys):
    folder = _folder(tmp_path, *_perfect_frames())
    assert main([str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "4 frames, 1 unreadable (left out)" in printed
    assert "mAP@0.5 1.0000  mAP@[.5:.95] 1.0000" in printed
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["map"] == metrics["map50"] == 1.0
    assert metrics["precision"] == metrics["recall"] == 1.0
    assert metrics["count_mae"] == metrics["count_mean_error"] == 0.0
    assert (metrics["frames"], metrics["unreadable"], metrics["true_boxes"]) == (4, 1, 5)
    beetle = metrics["per_class"]["beetle"]
    assert (beetle["ap"], beetle["true_boxes"], beetle["hits"]) == (1.0, 2, 2)
    with open(folder / "counts.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["frame"], r["true"], r["predicted"], r["error"]) for r in rows] == [
        ("a.jpg", "3", "3", ""),
        ("b.jpg", "2", "2", ""),
        ("empty.jpg", "0", "0", ""),
        ("broken.jpg", "", "", "truncated"),  # counted, not lost
    ]
    assert rows[0]["true moth"] == "2" and rows[0]["predicted beetle"] == "1"


def test_a_missed_box_costs_recall_and_count_as_worked_out_by_hand(tmp_path, capsys):
    truth, predicted = _perfect_frames()
    # frame a: the beetle box is found only at score 0.2, under the threshold 0.5
    predicted[0] = _frame("a.jpg", TRUE_A, [1, 1, 2], [0.9, 0.8, 0.2])
    folder = _folder(tmp_path, truth, predicted)
    result = _evaluate(folder)
    # kept: a 2 (both hits), b 2 (both hits); true: a 3, b 2, empty 0 (broken left out)
    assert (result.kept_boxes, result.hits, result.true_boxes) == (4, 4, 5)
    assert result.precision == 1.0 and result.recall == pytest.approx(4 / 5)
    assert [c.difference for c in result.counts if not c.error] == [-1, 0, 0]
    assert result.count_mae == pytest.approx(1 / 3) and result.count_bias == pytest.approx(-1 / 3)
    beetle = next(c for c in result.classes if c.name == "beetle")
    assert (beetle.recall, beetle.count_mae) == (pytest.approx(1 / 2), pytest.approx(1 / 3))
    # every box counts for AP, whatever the threshold: ranked 0.95 ... 0.2, all hits
    assert result.coco.map50 == pytest.approx(1.0)
    assert main([str(folder), "--no-report"]) == 0
    assert "precision 1.0000  recall 0.8000" in capsys.readouterr().out


def test_boxes_shifted_below_iou_half_score_zero(tmp_path):
    # 30 x 30 boxes moved 15 right: IoU = 15 * 30 / (45 * 30) = 1/3 < 0.5
    shifted = np.asarray(TRUE_A[:1], dtype=np.float32) + [15, 0, 15, 0]
    truth = [_frame("a.jpg", TRUE_A[:1], [1])]
    predicted = [_frame("a.jpg", shifted, [1], [0.9])]
    result = _evaluate(_folder(tmp_path, truth, predicted))
    assert result.coco.map50 == 0.0 and result.coco.map == 0.0
    assert result.precision == 0.0 and result.recall == 0.0
    assert result.count_mae == 0.0  # one box each: the count is right even so


def test_a_box_of_the_wrong_class_is_a_miss_and_a_false_box(tmp_path):
    truth = [_frame("a.jpg", TRUE_A[:1], [1])]
    predicted = [_frame("a.jpg", TRUE_A[:1], [2], [0.9])]
    result = _evaluate(_folder(tmp_path, truth, predicted))
    assert (result.precision, result.recall, result.coco.map50) == (0.0, 0.0, 0.0)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _hits(true_boxes, detections, iou_threshold):
    """COCO's matching in one frame and class: detections (box, score) highest score first,
    each taking the free true box of highest IoU at or above the threshold."""
    free, hits = list(range(len(true_boxes))), []
    for box, _ in sorted(detections, key=lambda d: -d[1]):
        ious = [(_iou(box, true_boxes[g]), g) for g in free]
        best = max(ious, default=(0.0, None))
        hit = best[1] is not None and best[0] >= iou_threshold
        if hit:
            free.remove(best[1])
        hits.append(hit)
    return hits


def _oracle_curve(truth, predicted, label, iou_threshold):
    """Interpolated precision at recall 0, 0.01 ... 1 of one class at one IoU (its mean is
    COCO's AP), or None without true boxes."""
    scored, positives = [], 0
    for t, p in zip(truth, predicted, strict=True):
        gt = [b.tolist() for b, lab in zip(t.boxes, t.labels, strict=True) if lab == label]
        dets = [
            (b.tolist(), float(s))
            for b, lab, s in zip(p.boxes, p.labels, p.scores, strict=True)
            if lab == label
        ]
        positives += len(gt)
        ordered = sorted(dets, key=lambda d: -d[1])
        scored += zip([d[1] for d in ordered], _hits(gt, ordered, iou_threshold), strict=True)
    if not positives:
        return None
    scored.sort(key=lambda s: -s[0])
    tp = np.cumsum([hit for _, hit in scored])
    fp = np.cumsum([not hit for _, hit in scored])
    recall = tp / positives
    precision = tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope
    points = []
    for r in np.linspace(0, 1, 101):
        reached = np.flatnonzero(recall >= r)
        points.append(precision[reached[0]] if len(reached) else 0.0)
    return np.array(points)


def _random_frames(seed, n_frames=8):
    rng = np.random.default_rng(seed)
    truth, predicted = [], []
    for i in range(n_frames):
        k = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (k, 2))
        boxes = np.hstack([xy, xy + rng.uniform(10, 60, (k, 2))])
        labels = rng.integers(1, 3, k)
        found = rng.random(k) < 0.8
        jitter = rng.normal(0, 5, (found.sum(), 4))
        false = rng.integers(0, 4)
        fxy = rng.uniform(0, 300, (false, 2))
        p_boxes = np.vstack([boxes[found] + jitter, np.hstack([fxy, fxy + 30])])
        p_labels = np.concatenate([labels[found], rng.integers(1, 3, false)])
        scores = rng.uniform(0.01, 1, len(p_labels))
        order = np.argsort(-scores)
        truth.append(_frame(f"{i}.jpg", boxes, labels, size=(400, 400)))
        predicted.append(
            _frame(f"{i}.jpg", p_boxes[order], p_labels[order], scores[order], size=(400, 400))
        )
    return truth, predicted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_an_independent_101_point_ap(tmp_path, seed):
    truth, predicted = _random_frames(seed)
    result = _evaluate(_folder(tmp_path, truth, predicted, threshold=0.4))
    read = read_detection_folder(tmp_path / "pred")  # the boxes as the folder holds them
    truth, predicted = read.truth, read.predicted
    iou_thresholds = np.linspace(0.5, 0.95, 10)
    curves = {
        label: [_oracle_curve(truth, predicted, label, t) for t in iou_thresholds]
        for label in (1, 2)
    }
    per_class = {
        label: [None if c is None else float(c.mean()) for c in curves[label]] for label in curves
    }
    everything = [ap for aps in per_class.values() for ap in aps if ap is not None]
    assert result.coco.map == pytest.approx(np.mean(everything), abs=1e-9)
    fifty = [aps[0] for aps in per_class.values() if aps[0] is not None]
    assert result.coco.map50 == pytest.approx(np.mean(fifty), abs=1e-9)
    for k, c in enumerate(result.classes, start=1):
        assert c.ap50 == pytest.approx(per_class[k][0], abs=1e-9)
        assert c.ap == pytest.approx(np.mean(per_class[k]), abs=1e-9)
    at_50 = [curves[label][0] for label in curves if curves[label][0] is not None]
    np.testing.assert_allclose(result.coco.precision50, np.mean(at_50, axis=0), atol=1e-9)
    # precision and recall at the threshold: the same matching on the kept boxes only
    hits = kept = positives = 0
    for t, p in zip(truth, predicted, strict=True):
        for label in (1, 2):
            gt = [b.tolist() for b, lab in zip(t.boxes, t.labels, strict=True) if lab == label]
            dets = [
                (b.tolist(), float(s))
                for b, lab, s in zip(p.boxes, p.labels, p.scores, strict=True)
                if lab == label and s >= 0.4
            ]
            hits += sum(_hits(gt, dets, 0.5))
            kept += len(dets)
            positives += len(gt)
    assert (result.hits, result.kept_boxes, result.true_boxes) == (hits, kept, positives)


def _images(html):
    return {
        alt: base64.b64decode(data)
        for alt, data in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', html)
    }


def test_report_has_the_curve_and_frames_worst_count_first(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    truth, predicted = [], []
    for i, (n_true, n_pred) in enumerate([(3, 3), (4, 1), (2, 4), (1, 1), (0, 0)]):
        path = str(frames / f"{i}.jpg")
        Image.new("RGB", (200, 100), (90, 90, 90)).save(path)
        boxes = [[10 + 30 * j, 10, 35 + 30 * j, 40] for j in range(max(n_true, n_pred))]
        truth.append(_frame(path, boxes[:n_true], [1] * n_true))
        predicted.append(_frame(path, boxes[:n_pred], [1] * n_pred, [0.9] * n_pred))
    truth.append(_frame("missing.jpg", TRUE_B, [1, 1]))  # not on disk: drawn on a blank canvas
    predicted.append(_frame("missing.jpg", [], [], []))
    folder = _folder(tmp_path, truth, predicted)
    assert main([str(folder)]) == 0
    html = (folder / "report.html").read_text()
    images = _images(html)
    assert "precision-recall curve" in images
    captions = [alt for alt in images if alt != "precision-recall curve"]
    differences = [int(re.search(r"\(([+-]\d+)\)", c).group(1)) for c in captions]
    # the worst count errors first; a tie (+2, -2, as many boxes wrong) in frame order
    assert differences == [-3, 2, -2, 0, 0, 0]
    assert captions[2].startswith("missing.jpg")
    for png in images.values():
        Image.open(io.BytesIO(png)).load()  # every image decodes
    assert "counts.csv" in html and "http" not in html


def test_the_drawing_puts_each_box_where_it_is_in_its_colour(tmp_path):
    path = tmp_path / "frame.png"
    Image.new("RGB", (360, 180), (255, 255, 255)).save(path)
    png = frame_png(str(path), (360, 180), [[20, 20, 100, 100]], [[200, 40, 300, 160]])
    drawn = Image.open(io.BytesIO(png)).convert("RGB")
    scale = drawn.width / 360
    legend = drawn.height - round(180 * scale)
    assert drawn.getpixel((round(20 * scale) + 1, legend + round(60 * scale))) == TRUE_COLOUR
    assert drawn.getpixel((round(250 * scale), legend + round(160 * scale) - 1)) == PREDICTED_COLOUR
    assert drawn.getpixel((round(60 * scale), legend + round(60 * scale))) == (255, 255, 255)


def test_mixing_a_detection_and_a_classifier_folder_is_one_clear_error(tmp_path, capsys):
    detection = _folder(tmp_path, *_perfect_frames())
    classifier = write_random_folder(tmp_path / "cls", n=10).path
    assert main([str(classifier), str(detection)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "is a detector's prediction folder" in error and str(detection) in error


def test_two_detection_folders_compare_on_the_frames_both_read(tmp_path, capsys):
    truth, predicted = _perfect_frames()
    extra = _frame("only_a.jpg", TRUE_B, [1, 1])
    found = _frame("only_a.jpg", TRUE_B, [1, 1], [0.9, 0.9])
    first = _folder(tmp_path, [*truth, extra], [*predicted, found], name="a")
    # B misses frame a's beetle (kept boxes 2 of 3) and cannot read b.jpg
    predicted[0] = _frame("a.jpg", TRUE_A[:2], [1, 1], [0.9, 0.8])
    predicted[1] = _frame("b.jpg", [], [], [], error="truncated")
    second = _folder(tmp_path, truth, predicted, name="b")
    assert main([str(first), str(second)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # read in both: a.jpg and empty.jpg (b.jpg broken in B, broken.jpg in both)
    assert "4 shared frames (2 unreadable in A or B, left out); 1 only in A, 0 only in B" in lines
    # A finds 3 of 3 true boxes, B 2 of 3, both at precision 1; count errors 0, 0 and -1, 0
    assert "recall at the threshold       1.0000    0.6667   -0.3333" in lines
    assert "precision at the threshold    1.0000    1.0000   +0.0000" in lines
    assert "count MAE per frame           0.0000    0.5000   +0.5000" in lines
    assert "frames whose count B got closer: 0, further: 1" in lines  # empty.jpg: as close


def test_folders_of_other_true_boxes_are_not_compared(tmp_path, capsys):
    truth, predicted = _perfect_frames()
    first = _folder(tmp_path, truth, predicted, name="a")
    truth[0] = _frame("a.jpg", TRUE_A[:2], [1, 1])
    second = _folder(tmp_path, truth, predicted, name="b")
    assert main([str(first), str(second)]) == 2
    assert "a.jpg has other true boxes" in capsys.readouterr().err


def test_a_file_moths_evaluate_did_not_write_stops_it(tmp_path, capsys):
    folder = _folder(tmp_path, *_perfect_frames())
    out = tmp_path / "out"
    out.mkdir()
    (out / "counts.csv").write_text("mine")
    assert main([str(folder), "--output", str(out)]) == 2
    assert "counts.csv" in capsys.readouterr().err
    assert (out / "counts.csv").read_text() == "mine"
    assert main([str(folder)]) == 0 and main([str(folder)]) == 0  # its own: overwritten


def test_a_frame_of_two_hundred_moths_counts_every_box(tmp_path):
    # COCO's default keeps 100 boxes per frame: a busy trap night would lose half its AP
    xy = np.stack(np.meshgrid(np.arange(20) * 20.0, np.arange(10) * 20.0), -1).reshape(-1, 2)
    boxes = np.hstack([xy, xy + 15])
    truth = [_frame("busy.jpg", boxes, [1] * 200, size=(400, 200))]
    predicted = [_frame("busy.jpg", boxes, [1] * 200, np.linspace(1, 0.5, 200), size=(400, 200))]
    result = _evaluate(_folder(tmp_path, truth, predicted))
    assert result.coco.map50 == pytest.approx(1.0) and result.recall == 1.0


def test_the_reference_page_names_every_metric_and_counts_column(tmp_path):
    result = _evaluate(_folder(tmp_path, *_perfect_frames()))
    metrics = result.to_json()
    keys = [*metrics, *metrics["per_class"]["moth"], *metrics["pr_curve_iou50"]]
    columns = counts_csv(result).splitlines()[0].split(",")[:8]
    text = (REPO / "docs" / "reference" / "detection-folder.md").read_text(encoding="utf-8")
    assert [name for name in {*keys, *columns} if f"`{name}`" not in text] == []


@pytest.mark.needs_real_parts
def test_report_renders_in_headless_chromium(tmp_path, browser):
    frames = tmp_path / "frames"
    frames.mkdir()
    truth, predicted = [], []
    for i in range(3):
        path = str(frames / f"{i}.png")
        Image.new("RGB", (200, 100), (200, 190, 170)).save(path)
        truth.append(_frame(path, TRUE_A, [1, 1, 2]))
        predicted.append(_frame(path, TRUE_A[i:], [1, 1, 2][i:], [0.9, 0.8, 0.7][i:]))
    folder = _folder(tmp_path, truth, predicted)
    assert main([str(folder)]) == 0
    page = render(browser, (folder / "report.html").as_uri())
    assert page.problems() == []
    assert page.images == 1 + 3  # the PR curve and each frame, decoded
    assert "Precision and recall" in page.text and "Example frames" in page.text
