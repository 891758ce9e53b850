"""Synthetic prediction folders for the evaluate tests (no model, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.paths import TEST_DATA
from moths_framework.evaluate.folder_writer import write_prediction_folder
from moths_framework.hierarchy import LabelHierarchy

# The species of test_data with enough images, plus two the model has no class for.
KNOWN = ["Aglais io", "Cydia pomonella", "Noctua comes", "Noctua pronuba", "Pammene aurana"]
KNOWN += ["Pammene rhediella", "Pieris rapae"]
UNKNOWN = ["Biston betularia", "Zygaena exulans"]


def model_hierarchy() -> LabelHierarchy:
    counts = dict.fromkeys(KNOWN, 30) | {"Biston betularia": 4, "Zygaena exulans": 12}
    return LabelHierarchy.from_csv(TEST_DATA / "hierarchy.csv", counts, min_samples=5)


@dataclass
class Written:
    """A written folder and what went into it."""

    path: Path
    hierarchy: LabelHierarchy
    paths: list[str]
    species: list[str]
    logits: dict[str, np.ndarray]
    errors: list[str | None]


def write_random_folder(
    out: Path,
    n: int = 90,
    seed: int = 0,
    signal: float = 2.0,
    unreadable: tuple[int, ...] = (),
    hierarchy: LabelHierarchy | None = None,
    species: list[str] | None = None,
    prefix: str = "/data",
    **kwargs,
) -> Written:
    """A folder of ``n`` images whose logits favour the true class by ``signal``.

    Paths are ``<prefix>/<species>/<i>.jpg`` (the image files need not exist).
    """
    hierarchy = hierarchy or model_hierarchy()
    rng = np.random.default_rng(seed)
    species = species or [str(s) for s in rng.choice(KNOWN + UNKNOWN, n)]
    n = len(species)
    logits = {}
    for position, (rank, classes) in enumerate(hierarchy.num_classes().items()):
        targets = np.array([hierarchy.targets(s)[position] for s in species])
        values = rng.normal(size=(n, classes)).astype(np.float32)
        values[np.arange(n), targets] += signal
        logits[rank] = values
    errors: list[str | None] = [None] * n
    for row in unreadable:
        errors[row] = "truncated"
        for values in logits.values():
            values[row] = np.nan
    paths = [f"{prefix}/{s}/{i}.jpg" for i, s in enumerate(species)]
    features = rng.normal(size=(n, 6)).astype(np.float32)
    path = write_prediction_folder(
        out, hierarchy, paths, species, logits, features, errors, **kwargs
    )
    return Written(path, hierarchy, paths, species, logits, errors)
