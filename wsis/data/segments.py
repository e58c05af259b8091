"""Graph segments of an image (OpenCV's Felzenszwalb-Huttenlocher): the segment proposals of
`--postprocess segments` and of the pseudo-mask snapping in training (`model.snap_pseudo_masks`)."""
from typing import Sequence

import numpy as np

GRAPH_KS = (100, 300, 1000)  # the granularities of the graph segments


def graph_labels(image: np.ndarray, k: float, sigma: float = 0.8, min_size: int = 50) -> np.ndarray:
    """Region ids int32 [H, W] of Felzenszwalb-Huttenlocher graph segmentation (OpenCV ximgproc) of
    an RGB uint8 image at granularity `k`."""
    import cv2

    return cv2.ximgproc.segmentation.createGraphSegmentation(sigma, float(k), min_size).processImage(image[..., ::-1])


def graph_segments(image: np.ndarray, ks: Sequence[float] = GRAPH_KS, sigma: float = 0.8,
                   min_size: int = 50) -> np.ndarray:  # fmt: skip
    """Segment proposals bool [N, H, W]: the regions of `graph_labels` at each granularity `k`."""
    out = []
    for k in ks:
        seg = graph_labels(image, k, sigma, min_size)
        out += [seg == i for i in range(int(seg.max()) + 1)]
    return np.stack(out)
