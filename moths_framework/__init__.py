"""moths-framework: train, export and serve moth species classifiers.

Importing the package imports no torch: the inference side runs on a box
with only ONNX Runtime, numpy and Pillow.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("moths-framework")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
