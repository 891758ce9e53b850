"""Count the moths per answer in a ``moths-infer --detector`` CSV (``make demo``'s last step).

    python scripts/species_counts.py detections.csv [--truth instances.json]

One line per answer (the classifier's rolled-up ``prediction``: a species, or a
broader taxon when it was unsure), most first; with ``--truth``, a COCO file whose
boxes carry ``attributes.species`` (``moths-synth-frames`` writes them), the true
count of each species on the same frames beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path


def detected(path: Path) -> tuple[Counter[str], set[str]]:
    """Moths per answer, and the names of the frames searched without error."""
    counts: Counter[str] = Counter()
    frames: set[str] = set()
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("error"):
                continue
            frames.add(Path(row["path"]).name)
            if row["x1"]:
                counts[row.get("prediction") or "(no classifier)"] += 1
    return counts, frames


def true_counts(instances: Path, frames: set[str]) -> Counter[str]:
    """True moths per species on ``frames`` (file names), from a COCO file."""
    coco = json.loads(instances.read_text(encoding="utf-8"))
    ids = {image["id"] for image in coco["images"] if Path(image["file_name"]).name in frames}
    return Counter(
        (a.get("attributes") or {}).get("species", "?")
        for a in coco["annotations"]
        if a["image_id"] in ids
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detections", type=Path, help="the CSV moths-infer --detector wrote")
    parser.add_argument("--truth", type=Path, help="COCO instances.json of the same frames")
    opts = parser.parse_args()
    counts, frames = detected(opts.detections)
    truth = true_counts(opts.truth, frames) if opts.truth else Counter()
    names = sorted(set(counts) | set(truth), key=lambda n: (-counts[n], -truth[n], n))
    width = max((len(n) for n in names), default=10)
    print(f"{'answer':<{width}}  moths" + ("  true" if opts.truth else ""))
    for name in names:
        print(f"{name:<{width}}  {counts[name]:>5}" + (f"  {truth[name]:>4}" if opts.truth else ""))
    total = f"{sum(counts.values()):>5}" + (f"  {sum(truth.values()):>4}" if opts.truth else "")
    print(f"{'all, ' + str(len(frames)) + ' frames':<{width}}  {total}")


if __name__ == "__main__":
    main()
