"""torchvision backbones and detectors for moths-framework (entry points ``torchvision``)."""

from moths_plugin_torchvision.backbone import TorchvisionBackbone, torchvision_preprocessing
from moths_plugin_torchvision.detector import TorchvisionDetector

__all__ = ["TorchvisionBackbone", "TorchvisionDetector", "torchvision_preprocessing"]
__version__ = "0.1.0"
