"""``images/<predicted species>/``: a prediction folder's images sorted by prediction, as links."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["link_images_by_prediction"]


def link_images_by_prediction(root: Path, rows: list[dict[str, str]]) -> None:
    """Link each readable row's image as ``root/<pred species>/correct <file>`` or
    ``wrong <stem> (<true species>)<suffix>``.

    The true species named is the data's label (``Other`` would hide which one).
    The suffix stays last so image viewers still open the link; a second image
    of the same name in one folder gets `` [2]``, `` [3]``, ...
    """
    taken: set[Path] = set()
    for row in rows:
        if row["error"]:
            continue
        predicted, true = row["pred_species"], row["true_species"]
        source = Path(row["path"])
        if predicted == true:
            stem = f"correct {source.stem}"
        else:
            stem = f"wrong {source.stem} ({_safe(row['species'] or true)})"
        folder = root / _safe(predicted)
        link = folder / f"{stem}{source.suffix}"
        copy = 2
        while link in taken:
            link = folder / f"{stem} [{copy}]{source.suffix}"
            copy += 1
        taken.add(link)
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.abspath(source), link)


def _safe(name: str) -> str:
    """A name usable as one path component."""
    cleaned = name.replace(os.sep, "_").replace("/", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else "_"
