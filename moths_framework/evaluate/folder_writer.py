"""The prediction folder: what ``moths-predict`` writes and ``moths-evaluate`` reads.

A folder holds, for N images in one order:

- ``predictions.csv``: ``path``, ``species`` (the data's label), per rank
  ``true_<rank>``, ``pred_<rank>``, ``prob_<rank>``, ``correct_<rank>``, the
  rolled-up answer (``prediction``, ``prediction_rank``, ``prediction_prob``,
  ``confident``, exactly as ``moths-infer`` gives it: the calibrated roll-up
  method and thresholds when the model has them; see :mod:`.answers`), then
  ``novelty_score`` and ``novel`` when the model has a novelty detector, and ``error``;
- ``outputs.npz`` (``numpy.load(..., allow_pickle=False)``): ``logits_<rank>``
  float32 [N, C], ``targets_<rank>`` int64 [N], ``features`` float32 [N, D],
  ``paths``, ``species``, ``errors`` ("" where none), and the scalars
  ``temperature_<rank>``, ``threshold_<rank>`` and ``rollup`` (the method, "" for
  the independent walk) the CSV was computed with; with a novelty detector also
  ``novelty_score`` float64 [N] (NaN where not scored) and ``novelty_threshold``;
- ``hierarchy.json``: the model's label hierarchy;
- optionally ``images/<predicted species>/`` with symbolic links to the images;
- ``.moths-output.json``: the record that ``moths-predict`` made the folder and
  wrote each of these (see :mod:`moths_framework.output_folders`).

No torch import: only numpy, the inference roll-up and the novelty detector.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from moths_framework.atomic_files import temporary_folder_beside
from moths_framework.csv_cells import spreadsheet_safe
from moths_framework.evaluate.answers import RolledUp, rolled_up_answers
from moths_framework.evaluate.image_links import link_images_by_prediction
from moths_framework.hierarchy import OTHER, LabelHierarchy
from moths_framework.inference.novelty_score import NoveltyDetector
from moths_framework.inference.prediction import OTHER_PREDICTION, check_thresholds, softmax
from moths_framework.output_folders import check_replaceable_folder, replace_folder

__all__ = [
    "HIERARCHY_JSON",
    "OUTPUTS_NPZ",
    "PREDICTIONS_CSV",
    "PREDICTION_FOLDER_MAKER",
    "prediction_csv_columns",
    "top1",
    "write_prediction_folder",
]

PREDICTIONS_CSV = "predictions.csv"
OUTPUTS_NPZ = "outputs.npz"
HIERARCHY_JSON = "hierarchy.json"
PREDICTION_FOLDER_MAKER = "moths-predict"  # the command a prediction folder records as its maker
IMAGES = "images"
NOVELTY_COLUMNS = ("novelty_score", "novel")
_CHUNK = 4096  # rows per softmax: bounds the float64 copy of a 2,700-class head


def prediction_csv_columns(ranks: Sequence[str], novelty: bool = False) -> list[str]:
    """The columns of ``predictions.csv`` for a hierarchy with these ranks (and
    ``novelty_score, novel`` for a model with a novelty detector)."""
    per_rank = [f"{c}_{rank}" for rank in ranks for c in ("true", "pred", "prob", "correct")]
    roll = ["prediction", "prediction_rank", "prediction_prob", "confident"]
    return ["path", "species", *per_rank, *roll, *(NOVELTY_COLUMNS if novelty else ()), "error"]


def write_prediction_folder(
    out_dir: str | Path,
    hierarchy: LabelHierarchy,
    paths: Sequence[str],
    true_species: Sequence[str],
    logits: Mapping[str, np.ndarray],
    features: np.ndarray,
    errors: Sequence[str | None],
    temperature: Mapping[str, float] | None = None,
    thresholds: Mapping[str, float] | None = None,
    images_by_prediction: bool = False,
    rollup: str | None = None,
    novelty: NoveltyDetector | None = None,
) -> Path:
    """Write a prediction folder, replacing ``out_dir`` only once it is complete.

    Args:
        out_dir: the folder. If it exists it must be empty, or a prediction
            folder holding nothing but what moths commands wrote (see
            :mod:`moths_framework.output_folders`); it is swapped for the new
            one at the end.
        hierarchy: the model's label hierarchy (class order of the logits).
        paths: image paths, one per row.
        true_species: the data's species per row; a species the model has no
            class for counts as ``Other``.
        logits: rank -> float32 [N, C]; rows of unreadable images may be NaN.
        features: float32 [N, D]; NaN rows for unreadable images.
        errors: per row, why the image could not be read, or ``None``.
        temperature: rank -> softmax temperature (default 1.0).
        thresholds: rank -> roll-up threshold (default as ``moths-infer``).
        images_by_prediction: also link the images under ``images/<predicted species>/``.
        rollup: the model's calibrated roll-up method (``heads``, ``species_sum``,
            ``fused``), or ``None`` for the independent walk (see :mod:`.answers`).
        novelty: the model's novelty detector; scores the ``features`` rows.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        OutputFolderError: ``out_dir`` is something other than a prediction folder
            moths-predict wrote, or holds a file it did not write.
        ValueError: inconsistent lengths or shapes, a temperature <= 0, a bad
            threshold or roll-up method, features the novelty detector cannot
            score.
    """
    out = Path(out_dir)
    n = len(paths)
    arrays = _check_inputs(hierarchy, n, true_species, logits, features, errors)
    temps = {rank: float((temperature or {}).get(rank, 1.0)) for rank in hierarchy.ranks}
    if min(temps.values()) <= 0:
        raise ValueError(f"temperatures must be > 0, got {temps}")
    thresholds = check_thresholds(hierarchy.ranks, thresholds)
    errors = [
        err if err is not None else ("model output is not finite" if bad else None)
        for err, bad in zip(errors, _non_finite_rows(arrays), strict=True)
    ]
    targets = {rank: np.zeros(n, dtype=np.int64) for rank in hierarchy.ranks}
    for row, species in enumerate(true_species):
        for rank, target in zip(hierarchy.ranks, hierarchy.targets(species), strict=True):
            targets[rank][row] = target
    best = {rank: top1(arrays[rank], temps[rank]) for rank in hierarchy.ranks}
    read = np.array([e is None for e in errors], dtype=bool)
    answers = rolled_up_answers(
        hierarchy, {r: a[read] for r, a in arrays.items()}, temps, thresholds, rollup
    )
    scores = _novelty_scores(novelty, features, read)

    check_replaceable_folder(out, PREDICTION_FOLDER_MAKER)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_folder_beside(out)  # unique: a killed run's staging never collides
    try:
        (staging / HIERARCHY_JSON).write_text(hierarchy.to_json(), encoding="utf-8")
        rows = _csv_rows(hierarchy, paths, true_species, targets, best, errors)
        _add_answers(hierarchy, rows, np.flatnonzero(read), answers)
        if novelty is not None:
            _add_novelty(rows, scores, novelty)
        columns = prediction_csv_columns(hierarchy.ranks, novelty is not None)
        _write_csv(staging / PREDICTIONS_CSV, columns, rows)
        npz = {f"logits_{rank}": arrays[rank] for rank in hierarchy.ranks}
        npz |= {f"targets_{rank}": targets[rank] for rank in hierarchy.ranks}
        npz |= {f"temperature_{rank}": np.float64(temps[rank]) for rank in hierarchy.ranks}
        npz |= {f"threshold_{rank}": np.float64(thresholds[rank]) for rank in hierarchy.ranks}
        npz["features"] = np.asarray(features, dtype=np.float32)
        npz["paths"] = np.asarray([str(p) for p in paths], dtype=str)
        npz["species"] = np.asarray(list(true_species), dtype=str)
        npz["errors"] = np.asarray([e or "" for e in errors], dtype=str)
        npz["rollup"] = np.asarray(rollup or "", dtype=str)
        if novelty is not None:
            npz["novelty_score"] = scores
            npz["novelty_threshold"] = np.float64(novelty.threshold)
        with open(staging / OUTPUTS_NPZ, "wb") as file:
            np.savez(file, **npz)
        if images_by_prediction:
            link_images_by_prediction(staging / IMAGES, rows)
        replace_folder(staging, out, PREDICTION_FOLDER_MAKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # this run's own staging, if still there
    return out


def _check_inputs(
    hierarchy: LabelHierarchy,
    n: int,
    true_species: Sequence[str],
    logits: Mapping[str, np.ndarray],
    features: np.ndarray,
    errors: Sequence[str | None],
) -> dict[str, np.ndarray]:
    """The logits as float32 arrays, after checking every length and shape."""
    if len(true_species) != n or len(errors) != n or len(features) != n:
        raise ValueError(
            f"{n} paths but {len(true_species)} species, {len(errors)} errors and "
            f"{len(features)} feature rows: give one of each per image"
        )
    missing = [rank for rank in hierarchy.ranks if rank not in logits]
    if missing:
        raise ValueError(f"no logits for rank(s) {', '.join(missing)}")
    arrays = {}
    for rank, classes in hierarchy.num_classes().items():
        array = np.asarray(logits[rank], dtype=np.float32)
        if array.shape != (n, classes):
            raise ValueError(
                f"logits of rank {rank!r} have shape {array.shape}, expected ({n}, {classes})"
            )
        arrays[rank] = array
    return arrays


def _non_finite_rows(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    bad = [~np.isfinite(a).all(axis=1) for a in arrays.values()]
    return np.logical_or.reduce(bad) if bad else np.zeros(0, dtype=bool)


def top1(logits: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(argmax index, its probability) per row, as ``moths-infer`` computes them.

    Rows with a non-finite logit get index 0 and probability NaN.
    """
    index = np.zeros(len(logits), dtype=np.int64)
    prob = np.full(len(logits), np.nan)
    for start in range(0, len(logits), _CHUNK):
        chunk = logits[start : start + _CHUNK]
        finite = np.isfinite(chunk).all(axis=1)
        probs = softmax(chunk[finite], temperature)
        rows = np.flatnonzero(finite) + start
        index[rows] = probs.argmax(axis=1)
        prob[rows] = probs.max(axis=1)
    return index, prob


def _csv_rows(
    hierarchy: LabelHierarchy,
    paths: Sequence[str],
    true_species: Sequence[str],
    targets: Mapping[str, np.ndarray],
    best: Mapping[str, tuple[np.ndarray, np.ndarray]],
    errors: Sequence[str | None],
) -> list[dict[str, str]]:
    """Per image: its path, labels and each head's top-1 (the roll-up comes after)."""
    classes = {rank: hierarchy.classes(rank) for rank in hierarchy.ranks}
    rows = []
    for i, (path, species, error) in enumerate(zip(paths, true_species, errors, strict=True)):
        row = {"path": str(path), "species": species, "error": error or ""}
        for rank in hierarchy.ranks:
            true = classes[rank][targets[rank][i]]
            row[f"true_{rank}"] = true
            if error is None:
                name = classes[rank][best[rank][0][i]]
                row[f"pred_{rank}"] = name
                row[f"prob_{rank}"] = f"{float(best[rank][1][i]):.6f}"
                row[f"correct_{rank}"] = _bool(name == true)
        rows.append(row)
    return rows


def _add_answers(
    hierarchy: LabelHierarchy, rows: list[dict[str, str]], read: np.ndarray, answers: RolledUp
) -> None:
    """The rolled-up columns of the rows ``read`` (positions of the images that were read)."""
    classes = {rank: hierarchy.classes(rank) for rank in answers.order}
    index, prob = answers.answer()
    for j, row in enumerate(read):
        rank = answers.order[answers.rank[j]]
        name = classes[rank][index[j]]
        rows[row] |= {
            "prediction": OTHER_PREDICTION if name == OTHER else name,
            "prediction_rank": rank,
            "prediction_prob": f"{float(prob[j]):.6f}",
            "confident": _bool(bool(answers.confident[j])),
        }


def _novelty_scores(
    novelty: NoveltyDetector | None, features: np.ndarray, read: np.ndarray
) -> np.ndarray:
    """Novelty score per row; NaN for rows not read or without finite features."""
    scores = np.full(len(read), np.nan)
    if novelty is None:
        return scores
    features = np.asarray(features, dtype=np.float32)
    rows = read & np.isfinite(features).all(axis=1)
    scores[rows] = novelty.score(features[rows])
    return scores


def _add_novelty(rows: list[dict[str, str]], scores: np.ndarray, novelty: NoveltyDetector) -> None:
    for row, score in zip(rows, scores, strict=True):
        if np.isfinite(score):
            row["novelty_score"] = f"{score:.6f}"
            row["novel"] = _bool(bool(novelty.is_novel(score)))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    # Names, paths and errors are quoted against formula injection; numbers never are.
    numbers = {c for c in columns if c.startswith("prob_")} | {"prediction_prob", *NOVELTY_COLUMNS}
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v if k in numbers else spreadsheet_safe(v) for k, v in row.items()})
