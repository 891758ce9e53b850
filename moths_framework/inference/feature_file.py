"""Feature vectors beside ``detections.csv``: row ``i`` of the file is data row ``i`` of the CSV.

``moths-infer --detector --model --features FILE`` keeps the classifier's
``features`` output of every crop, for tracking (how alike two crops look). A row
of ``detections.csv`` without a crop (a frame with no detection, a frame that could
not be read, a crop the classifier could not read) gets a row of NaN, so the two
files always have the same number of rows.

Formats, by the file's suffix: ``.npy`` (numpy, float32 ``[rows, F]``) or
``.parquet`` (columns ``f0`` ... ``f<F-1>``, float32; needs ``pyarrow``). No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moths_framework.atomic_files import replaced_atomically

__all__ = ["FEATURE_SUFFIXES", "FeatureRows", "check_feature_path", "read_features"]

FEATURE_SUFFIXES = (".npy", ".parquet")


def check_feature_path(path: str | os.PathLike) -> Path:
    """``path`` if it can be written: a ``.npy`` file, or ``.parquet`` with pyarrow
    installed. Raises ValueError (one line) otherwise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FEATURE_SUFFIXES:
        raise ValueError(f"--features {path}: name a .npy or .parquet file")
    if suffix == ".parquet" and not _has_pyarrow():
        raise ValueError(
            f"--features {path}: Parquet needs pyarrow (pip install pyarrow), or name a .npy file"
        )
    if path.is_dir():
        raise ValueError(f"--features {path} is a directory; name a .npy or .parquet file")
    return path


class FeatureRows:
    """Rows collected one by one (``None``: a row without features), written at the end.

    Args:
        width: the length of a feature vector when the model declares it (``None``:
            taken from the first vector; 0 when no row has one).
    """

    def __init__(self, width: int | None = None) -> None:
        self.width = width
        self._rows: list[np.ndarray | None] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, features: np.ndarray | None) -> None:
        """Append one row."""
        if features is not None and self.width is None:
            self.width = int(features.shape[-1])
        self._rows.append(features)

    def array(self) -> np.ndarray:
        """The rows as float32 ``[rows, width]``, NaN for rows without features."""
        out = np.full((len(self._rows), self.width or 0), np.nan, dtype=np.float32)
        for i, row in enumerate(self._rows):
            if row is not None:
                out[i] = row
        return out

    def write(self, path: str | os.PathLike) -> None:
        """Write the rows to ``path`` (``.npy`` or ``.parquet``), atomically."""
        path = Path(path)
        with replaced_atomically(path) as temporary:
            if path.suffix.lower() == ".parquet":
                _write_parquet(temporary, self.array())
            else:
                with open(temporary, "wb") as file:
                    np.save(file, self.array())


def read_features(path: str | os.PathLike) -> np.ndarray:
    """A feature file as float32 ``[rows, F]``; ValueError (one line) when it cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            check_feature_path(path)
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            columns = [table.column(name).to_numpy() for name in table.column_names]
            rows = table.num_rows
            return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((rows, 0))
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read features {path}: {error}") from None
    if array.ndim != 2:
        raise ValueError(
            f"features {path}: expected a 2-D array [rows, F], got shape {array.shape}"
        )
    return array.astype(np.float32, copy=False)


def _write_parquet(path: Path, array: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({f"f{i}": array[:, i] for i in range(array.shape[1])})
    pq.write_table(table, path)


def _has_pyarrow() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True
