"""torchvision backbones for moths-framework (entry point ``torchvision``)."""

from moths_plugin_torchvision.backbone import TorchvisionBackbone, torchvision_preprocessing

__all__ = ["TorchvisionBackbone", "torchvision_preprocessing"]
__version__ = "0.1.0"
