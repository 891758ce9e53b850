"""Every training run records its split in ``<run dir>/split.csv``.

The split is checked against what docs/commands/fit.md promises, with the csv module
only: never against ``stratified_split`` itself.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

from helpers.fit_args import tiny_fit_args

from moths_framework.cli.fit import main as fit

FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1"]  # fmt: skip
FRACTION = 0.15  # configs/dev.yaml's test_fraction
DROPPED = "Pieris rapae"  # left out of the smaller manifest
THINNED = "Aglais io"  # every other image left out of the smaller manifest


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def run_split(tmp_path: Path, name: str, manifest: Path, *extra: str) -> dict[str, str]:
    """Fit a fast run on ``manifest``; its split.csv as path -> phase, after checking
    that it lists every manifest image once, in the manifest's order, with its species."""
    run = tmp_path / name
    assert fit(tiny_fit_args(run, manifest, *FAST, *extra)) == 0
    with open(run / "split.csv", newline="", encoding="utf-8") as file:
        assert file.readline() == "path,species,phase\n"
    rows = read_csv(run / "split.csv")
    images = [(str(manifest.parent / r["path"]), r["species"]) for r in read_csv(manifest)]
    assert [(r["path"], r["species"]) for r in rows] == images
    assert {r["phase"] for r in rows} == {"train", "val", "test"}
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    return {r["path"]: r["phase"] for r in rows}


def smaller_manifest(prepared: Path, tmp_path: Path) -> Path:
    """The prepared manifest without DROPPED and without every other THINNED image."""
    rows = [dict(r, path=str(prepared / r["path"])) for r in read_csv(prepared / "manifest.csv")]
    thinned = [r for r in rows if r["species"] == THINNED][1::2]
    kept = [r for r in rows if r["species"] != DROPPED and r not in thinned]
    path = tmp_path / "smaller-data" / "manifest.csv"
    path.parent.mkdir()
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return path


def test_a_training_run_writes_its_split(tmp_path, prepared):
    manifest = prepared / "manifest.csv"
    full = run_split(tmp_path, "full", manifest)
    species = {str(prepared / r["path"]): r["species"] for r in read_csv(manifest)}
    per_species: dict[str, Counter] = defaultdict(Counter)
    for path, phase in full.items():
        per_species[species[path]][phase] += 1
    for name, counts in per_species.items():  # each has 3 images or more: val and test
        assert sum(counts.values()) >= 3 and counts["val"] and counts["test"], (name, counts)
    # each image goes to val, and to test, with probability FRACTION: 226 images, so
    # about 34 each; 4 standard deviations (5.4) either side
    sizes = Counter(full.values())
    for phase in ("val", "test"):
        assert abs(sizes[phase] - FRACTION * len(full)) < 4 * 5.4, sizes

    # Stable as the data changes: with one species gone and half of another's images
    # gone, every other species' images keep their phase, and no image that trains
    # in the smaller data is held out once the other images are added back.
    smaller = run_split(tmp_path, "smaller", smaller_manifest(prepared, tmp_path))
    assert smaller and not any(species[p] == DROPPED for p in smaller)
    for path, phase in smaller.items():
        if species[path] != THINNED:
            assert full[path] == phase, (path, phase, full[path])
        elif phase == "train":
            assert full[path] == "train", path

    # The split seed decides it: another seed, another split of the same images.
    reseeded = run_split(tmp_path, "reseeded", manifest, "--data.split_seed", "7")
    assert reseeded != full and Counter(reseeded.values())["val"] > 0
