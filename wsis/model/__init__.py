"""The network of Sec. 3: a GroupNorm ResNet, the detector, IMG, the segmentation head and the losses."""
from .backbone import ResNetGN, load_pretrained
from .network import CommunityNet, Selection

__all__ = ["CommunityNet", "ResNetGN", "Selection", "load_pretrained"]
