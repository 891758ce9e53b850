"""timm backbones for moths-framework (entry point ``timm`` in ``moths_framework.backbones``)."""

from moths_plugin_timm.backbone import TimmBackbone, timm_preprocessing

__all__ = ["TimmBackbone", "timm_preprocessing"]
__version__ = "0.1.0"
