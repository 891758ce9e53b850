"""Production inference on ONNX Runtime, on a box without torch.

Imports no torch or Lightning, and nothing of ``model/``, ``data/``, ``export/``,
``train/`` or ``cli/``: only numpy, ONNX Runtime, Pillow and the torch-free core
(:mod:`~moths_framework.hierarchy`, :mod:`~moths_framework.preprocessing`,
:mod:`~moths_framework.images`, :mod:`~moths_framework.zoo` for ``zoo:`` names).

>>> from moths_framework.inference import OnnxClassifier
>>> classifier = OnnxClassifier.from_file("model.onnx")          # doctest: +SKIP
>>> [p.prediction for p in classifier.predict(["moth.jpg"])]      # doctest: +SKIP

Trap frames: :class:`OnnxDetector` finds the moths, :class:`Pipeline` classifies each crop.

>>> from moths_framework.inference import OnnxDetector, Pipeline
>>> pipeline = Pipeline(OnnxDetector.from_file("det.onnx"), classifier)  # doctest: +SKIP
>>> [len(f.detections) for f in pipeline.run(["frame.jpg"])]            # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moths_framework.inference.classifier import ImageInput, OnnxClassifier
    from moths_framework.inference.detector import Detection, OnnxDetector
    from moths_framework.inference.metadata import ModelFormatError, ModelMetadata
    from moths_framework.inference.pipeline import FrameDetection, FrameResult, Pipeline
    from moths_framework.inference.prediction import (
        DEFAULT_THRESHOLD,
        OTHER_PREDICTION,
        Prediction,
    )
    from moths_framework.inference.species_list import SpeciesListError

# Each name's module, imported on first use: a module that needs only the metadata
# contract (the checkpoint, moths-fit --help) does not load ONNX Runtime.
_EXPORTS = {
    "DEFAULT_THRESHOLD": "prediction",
    "OTHER_PREDICTION": "prediction",
    "Detection": "detector",
    "FrameDetection": "pipeline",
    "FrameResult": "pipeline",
    "ImageInput": "classifier",
    "ModelFormatError": "metadata",
    "ModelMetadata": "metadata",
    "OnnxClassifier": "classifier",
    "OnnxDetector": "detector",
    "Pipeline": "pipeline",
    "Prediction": "prediction",
    "SpeciesListError": "species_list",
}

__all__ = [
    "DEFAULT_THRESHOLD",
    "OTHER_PREDICTION",
    "Detection",
    "FrameDetection",
    "FrameResult",
    "ImageInput",
    "ModelFormatError",
    "ModelMetadata",
    "OnnxClassifier",
    "OnnxDetector",
    "Pipeline",
    "Prediction",
    "SpeciesListError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
