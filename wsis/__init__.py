"""wsis: weakly supervised instance segmentation by deep community learning (CVPR 2020)."""

__version__ = "0.1.0"
