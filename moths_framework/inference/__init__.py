"""Production inference on ONNX Runtime. Imports no torch.

>>> from moths_framework.inference import OnnxClassifier
>>> classifier = OnnxClassifier.from_file("model.onnx")          # doctest: +SKIP
>>> [p.prediction for p in classifier.predict(["moth.jpg"])]      # doctest: +SKIP
"""

from moths_framework.inference.classifier import ImageInput, OnnxClassifier
from moths_framework.inference.metadata import ModelFormatError, ModelMetadata
from moths_framework.inference.prediction import (
    DEFAULT_THRESHOLD,
    OTHER_PREDICTION,
    Prediction,
)
from moths_framework.inference.species_list import SpeciesListError

__all__ = [
    "DEFAULT_THRESHOLD",
    "OTHER_PREDICTION",
    "ImageInput",
    "ModelFormatError",
    "ModelMetadata",
    "OnnxClassifier",
    "Prediction",
    "SpeciesListError",
]
