"""The network of Sec. 3: a timm backbone, the detector, IMG, the segmentation head and the losses."""
from .backbone import SUPPORTED, Backbone
from .network import CommunityNet, Selection

__all__ = ["SUPPORTED", "Backbone", "CommunityNet", "Selection"]
