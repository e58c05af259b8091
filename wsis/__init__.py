"""wsis: weakly supervised instance segmentation by deep community learning (Hwang et al., arXiv:2001.11207)."""

__version__ = "0.1.0"
