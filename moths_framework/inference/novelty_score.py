"""The novel-species flag at inference: a distance from the trained species, in numpy.

``moths-calibrate`` fits a detector on the validation images' feature vectors
(the model's ``features`` output) and stores it in the model file's metadata
(``moths.novelty``) as float16 arrays in base64:

- ``mahalanobis``: class-conditional Gaussians with one shared covariance.
  Stored as a centre ``g`` [D], a whitening matrix ``W`` [D, D] and the
  whitened species means ``M`` [K, D]; the score is the squared Mahalanobis
  distance to the nearest mean, ``min_k |(f - g) W - M_k|^2``.
- ``knn``: the cosine distance to the nearest stored feature vector
  (``bank`` [K, D], L2-normalised); score ``1 - max_k cos(f, bank_k)``.

An image is ``novel`` when its score exceeds ``threshold`` (set for a 5%
false-positive rate on validation images of known species).

No torch import.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["NOVELTY_METHODS", "NoveltyDetector", "decode_array", "encode_array"]

NOVELTY_METHODS = ("mahalanobis", "knn")
_ARRAYS = {"mahalanobis": ("center", "whitening", "means"), "knn": ("bank",)}
_CHUNK = 512
_LITTLE_ENDIAN = {"float16": "<f2", "float32": "<f4"}


def _storage_dtype(array: np.ndarray) -> str:
    """float16 (half the bytes) unless a value would overflow it."""
    with np.errstate(over="ignore"):
        return "float16" if np.isfinite(array.astype(np.float16)).all() else "float32"


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A float array as JSON: shape and base64 of its little-endian float16 bytes
    (float32 where float16 would overflow)."""
    dtype = _storage_dtype(np.asarray(array, dtype=np.float32))
    data = np.ascontiguousarray(array, dtype=_LITTLE_ENDIAN[dtype])
    return {"shape": list(data.shape), dtype: base64.b64encode(data.tobytes()).decode()}


def decode_array(value: Mapping[str, Any]) -> np.ndarray:
    """The float32 array of :func:`encode_array`'s JSON form."""
    dtype = "float16" if "float16" in value else "float32"
    raw = base64.b64decode(value[dtype])
    array = np.frombuffer(raw, dtype=_LITTLE_ENDIAN[dtype]).astype(np.float32)
    return array.reshape(value["shape"])


@dataclass(frozen=True)
class NoveltyDetector:
    """A fitted novelty detector (see the module doc).

    Attributes:
        method: one of :data:`NOVELTY_METHODS`.
        threshold: scores above it are ``novel``.
        arrays: the method's statistics, float32 (``center``/``whitening``/``means``
            or ``bank``).
    """

    method: str
    threshold: float
    arrays: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.method not in NOVELTY_METHODS:
            raise ValueError(f"unknown novelty method {self.method!r}; known: {NOVELTY_METHODS}")
        missing = [name for name in _ARRAYS[self.method] if name not in self.arrays]
        if missing:
            raise ValueError(f"novelty method {self.method!r} needs array(s) {missing}")

    @property
    def num_features(self) -> int:
        """The length of the feature vector it scores."""
        first = self.arrays["center" if self.method == "mahalanobis" else "bank"]
        return int(first.shape[-1])

    def score(self, features: np.ndarray) -> np.ndarray:
        """Novelty score per row of ``features`` [N, D]: higher is less like the known species."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"novelty: features of shape {features.shape}, expected [N, {self.num_features}]"
            )
        scores = np.empty(len(features), dtype=np.float64)
        for start in range(0, len(features), _CHUNK):
            rows = slice(start, start + _CHUNK)
            scores[rows] = self._score_chunk(features[rows])
        return scores

    @cached_property
    def _arrays64(self) -> dict[str, np.ndarray]:
        return {name: array.astype(np.float64) for name, array in self.arrays.items()}

    def _score_chunk(self, features: np.ndarray) -> np.ndarray:
        # float64: the expanded square |z|^2 - 2 z.m + |m|^2 cancels; in float32 it
        # lost ~4e-4 of the score, more than torch and ONNX Runtime features differ.
        features = features.astype(np.float64)
        arrays = self._arrays64
        if self.method == "knn":
            norms = np.linalg.norm(features, axis=1, keepdims=True)
            unit = features / np.maximum(norms, 1e-12)
            return 1.0 - (unit @ arrays["bank"].T).max(axis=1)
        z = (features - arrays["center"]) @ arrays["whitening"]
        means = arrays["means"]
        squared = (z * z).sum(axis=1, keepdims=True) - 2.0 * z @ means.T
        squared += (means * means).sum(axis=1)[None, :]
        return np.maximum(squared.min(axis=1), 0.0)

    def is_novel(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score flags a novel species."""
        return np.asarray(scores) > self.threshold

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in checkpoints and ONNX metadata (arrays as float16)."""
        return {
            "method": self.method,
            "threshold": float(self.threshold),
            "arrays": {name: encode_array(self.arrays[name]) for name in _ARRAYS[self.method]},
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> NoveltyDetector:
        """Read :meth:`to_json`'s form."""
        arrays = {name: decode_array(array) for name, array in value["arrays"].items()}
        return cls(str(value["method"]), float(value["threshold"]), arrays)

    def rounded(self) -> NoveltyDetector:
        """The same detector with its arrays rounded to float16, as stored."""
        return NoveltyDetector.from_json(self.to_json())
