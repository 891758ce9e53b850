"""Reading a prediction folder back (see :mod:`moths_framework.evaluate.folder_writer`).

``moths-evaluate`` and ``moths-calibrate`` work from the folder alone: the
logits, targets and hierarchy are enough to recompute every number. No torch.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moths_framework.csv_table import csv_table
from moths_framework.evaluate.folder_writer import (
    HIERARCHY_JSON,
    OUTPUTS_NPZ,
    PREDICTIONS_CSV,
    top1,
)
from moths_framework.hierarchy import HierarchyError, LabelHierarchy
from moths_framework.inference.rollup import ROLLUP_METHODS

__all__ = ["PredictionFolder", "PredictionFolderError", "RankOutputs"]

_CHUNK = 4096


class PredictionFolderError(ValueError):
    """A prediction folder is missing or unreadable; the message names the file."""


@dataclass(frozen=True)
class RankOutputs:
    """What the model said at one rank, for the rows that were read.

    Attributes:
        targets: true class index per row.
        pred: top-1 class index per row.
        prob: top-1 probability (temperature applied) per row.
        top5: whether the true class is among the five most probable.
    """

    targets: np.ndarray
    pred: np.ndarray
    prob: np.ndarray
    top5: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.targets


@dataclass(frozen=True)
class PredictionFolder:
    """The content of a prediction folder, rows in file order.

    Attributes:
        path: the folder.
        hierarchy: the model's label hierarchy.
        paths: image path per row.
        species: the data's species per row.
        errors: why an image could not be read, ``""`` where it was.
        logits: rank -> float32 [N, C] (NaN rows where ``errors`` is set).
        targets: rank -> true class index per row.
        temperature: rank -> softmax temperature the folder was written with.
        thresholds: rank -> roll-up threshold the folder was written with.
        rollup: the calibrated roll-up method it was written with, or ``None``
            (the independent walk; also folders written before it was stored).
        novelty_score: novelty score per row (NaN where not scored), or ``None``
            when the model had no novelty detector.
        novelty_threshold: scores above it were flagged ``novel`` (``None`` without
            a detector).
    """

    path: Path
    hierarchy: LabelHierarchy
    paths: np.ndarray
    species: np.ndarray
    errors: np.ndarray
    logits: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    temperature: dict[str, float]
    thresholds: dict[str, float]
    rollup: str | None = None
    novelty_score: np.ndarray | None = None
    novelty_threshold: float | None = None

    @classmethod
    def load(cls, path: str | Path) -> PredictionFolder:
        """Read a folder written by ``moths-predict``.

        Raises:
            PredictionFolderError: the folder or one of its files is missing,
                unreadable, or disagrees with the others.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise PredictionFolderError(
                f"{folder}: no such prediction folder (moths-predict writes one)"
            )
        for name in (HIERARCHY_JSON, OUTPUTS_NPZ, PREDICTIONS_CSV):
            if not (folder / name).is_file():
                raise PredictionFolderError(
                    f"{folder}: missing {name}; is this a folder written by moths-predict?"
                )
        hierarchy = _hierarchy(folder / HIERARCHY_JSON)
        arrays = _arrays(folder / OUTPUTS_NPZ, hierarchy)
        n = len(arrays["paths"])
        rows = _csv_rows(folder / PREDICTIONS_CSV)
        if rows != n:
            raise PredictionFolderError(
                f"{folder / PREDICTIONS_CSV}: {rows} rows but {OUTPUTS_NPZ} has {n}; "
                "the folder is incomplete, run moths-predict again"
            )
        ranks = hierarchy.ranks
        return cls(
            path=folder,
            hierarchy=hierarchy,
            paths=arrays["paths"],
            species=arrays["species"],
            errors=arrays["errors"],
            logits={rank: arrays[f"logits_{rank}"] for rank in ranks},
            targets={rank: arrays[f"targets_{rank}"].astype(np.int64) for rank in ranks},
            temperature={rank: float(arrays[f"temperature_{rank}"]) for rank in ranks},
            thresholds={rank: float(arrays[f"threshold_{rank}"]) for rank in ranks},
            rollup=str(arrays.get("rollup", "")) or None,
            novelty_score=arrays.get("novelty_score"),
            novelty_threshold=float(arrays["novelty_threshold"])
            if "novelty_threshold" in arrays
            else None,
        )

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the rows whose image was read."""
        return self.errors == ""

    def features(self) -> np.ndarray:
        """The feature vectors, float32 [N, D] (read on demand: they can be large)."""
        with np.load(self.path / OUTPUTS_NPZ, allow_pickle=False) as npz:
            return npz["features"]

    def rank_outputs(self, rank: str, rows: np.ndarray | None = None) -> RankOutputs:
        """Top-1, its probability and top-5 hits at ``rank``, for ``rows`` (default: ``ok``).

        Works through the rows in chunks, so memory stays bounded for large heads.
        """
        rows = np.flatnonzero(self.ok) if rows is None else np.asarray(rows)
        targets = self.targets[rank][rows]
        pred = np.zeros(len(rows), dtype=np.int64)
        prob = np.zeros(len(rows))
        hits = np.zeros(len(rows), dtype=bool)
        for start in range(0, len(rows), _CHUNK):
            part = slice(start, start + _CHUNK)
            logits = self.logits[rank][rows[part]]
            pred[part], prob[part] = top1(logits, self.temperature[rank])
            hits[part] = _top_k_hits(logits, targets[part], 5)
        return RankOutputs(targets, pred, prob, hits)


def _top_k_hits(logits: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each row's target is among its k largest logits (ties favour the target)."""
    own = logits[np.arange(len(logits)), targets]
    return (logits > own[:, None]).sum(axis=1) < k


def _hierarchy(path: Path) -> LabelHierarchy:
    try:
        return LabelHierarchy.from_json(path.read_text(encoding="utf-8"))
    except (HierarchyError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise PredictionFolderError(f"{path}: not a label hierarchy ({error})") from None


def _arrays(path: Path, hierarchy: LabelHierarchy) -> dict[str, np.ndarray]:
    ranks = hierarchy.ranks
    needed = ["paths", "species", "errors"] + [
        f"{key}_{rank}" for rank in ranks for key in ("logits", "targets", "temperature")
    ]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in needed if key not in npz.files]
            if missing:
                raise PredictionFolderError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {key: npz[key] for key in npz.files if key != "features"}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        if isinstance(error, PredictionFolderError):
            raise
        raise PredictionFolderError(f"{path}: unreadable ({error})") from None
    for rank in ranks:
        arrays.setdefault(f"threshold_{rank}", np.float64(0.5))
    _check_shapes(path, arrays, hierarchy)
    return arrays


def _check_shapes(path: Path, arrays: dict[str, np.ndarray], hierarchy: LabelHierarchy) -> None:
    n = len(arrays["paths"])
    for rank, classes in hierarchy.num_classes().items():
        logits, targets = arrays[f"logits_{rank}"], arrays[f"targets_{rank}"]
        if logits.shape != (n, classes) or targets.shape != (n,):
            raise PredictionFolderError(
                f"{path}: logits_{rank} {logits.shape} / targets_{rank} {targets.shape} do not "
                f"fit {n} images and the hierarchy's {classes} {rank} classes"
            )
        if n and (targets.min() < 0 or targets.max() >= classes):
            raise PredictionFolderError(f"{path}: targets_{rank} outside 0..{classes - 1}")
    if len(arrays["species"]) != n or len(arrays["errors"]) != n:
        raise PredictionFolderError(f"{path}: species/errors do not have {n} rows")
    scores = arrays.get("novelty_score")
    if scores is not None and scores.shape != (n,):
        raise PredictionFolderError(f"{path}: novelty_score {scores.shape} does not fit {n} rows")
    if "rollup" in arrays and str(arrays["rollup"]) not in ("", *ROLLUP_METHODS):
        raise PredictionFolderError(
            f"{path}: unknown roll-up method {str(arrays['rollup'])!r}; "
            f"known: {', '.join(ROLLUP_METHODS)}"
        )


def _csv_rows(path: Path) -> int:
    what = "a predictions.csv from moths-predict"
    with csv_table(path, ("path",), what, PredictionFolderError) as table:
        return sum(1 for _ in table.rows)
