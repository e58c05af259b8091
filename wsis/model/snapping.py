"""Pseudo masks snapped to image segments (a training-time form of the paper's segment post-processing).

Each foreground proposal's Eq.1 mask is replaced by the graph segment of the image (OpenCV's
Felzenszwalb-Huttenlocher, at the granularities that `--postprocess segments` uses, on the image
scaled by SCALE) that overlaps it best on the proposal's T x T grid, so that the segmentation head
learns outlines rather than the blob of a CAM. It is not in the paper: `model.snap_pseudo_masks`
turns it on.
"""
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.segments import GRAPH_KS, graph_labels
from .pairwise import cell_centres

# Segments are computed at half the training scale: 4x cheaper, and for the synthetic default (trained
# at about 1.5x its images' size) close to the images' own size, where `--postprocess segments` works.
SCALE = 0.5


def image_segments(rgb: torch.Tensor, ks: Sequence[float] = GRAPH_KS) -> torch.Tensor:
    """Segment ids int64 `[len(ks), H, W]` of an RGB image `[3, H, W]` in [0, 1], ids unique across granularities."""
    image = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    maps, offset = [], 0
    for k in ks:
        labels = graph_labels(np.ascontiguousarray(image), k)
        maps.append(torch.from_numpy(labels.astype(np.int64)) + offset)
        offset += int(labels.max()) + 1
    return torch.stack(maps)


def roi_segment_ids(segments: torch.Tensor, roi: torch.Tensor, size: int) -> torch.Tensor:
    """The segment ids `[G, size, size]` at the cell centres of a `size x size` grid over `roi` (x1, y1, x2, y2)."""
    _, h, w = segments.shape
    x, y = cell_centres(roi.float().cpu()[None], size)
    xs, ys = x[0].floor().long().clamp(0, w - 1), y[0].floor().long().clamp(0, h - 1)
    return segments[:, ys[:, None], xs[None, :]]


def snap(mask: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The segment of `ids [G, T, T]` (cells sharing an id, at any granularity) of highest IoU with
    the bool `mask [T, T]`; the mask itself when it is empty or no segment overlaps it."""
    if not mask.any():
        return mask
    flat = ids.reshape(-1)
    unique, inverse = flat.unique(return_inverse=True)
    cells = mask.reshape(-1).repeat(len(ids)).float()
    area = torch.zeros(len(unique)).index_add_(0, inverse, torch.ones_like(cells))
    inter = torch.zeros(len(unique)).index_add_(0, inverse, cells)
    iou = inter / (area + mask.sum() - inter)
    best = int(iou.argmax())
    if iou[best] <= 0:
        return mask
    return (ids == unique[best]).any(0)


def snap_masks(rgb: torch.Tensor, rois: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each pseudo mask `[N, T, T]` of `rois [N, 5]` (batch index, box in the pixels of `rgb [B, 3, H, W]`,
    in [0, 1]) replaced by its best-overlapping segment of the image."""
    if len(rois) == 0:
        return masks
    small = F.interpolate(rgb, scale_factor=SCALE, mode="area", recompute_scale_factor=False)
    rx, ry = small.shape[-1] / rgb.shape[-1], small.shape[-2] / rgb.shape[-2]
    ratio = rois.new_tensor([rx, ry, rx, ry])
    segments = {b: image_segments(small[b]) for b in rois[:, 0].long().unique().tolist()}
    out = [snap(m.bool().cpu(), roi_segment_ids(segments[int(r[0])], r[1:] * ratio, m.shape[-1]))
           for m, r in zip(masks, rois)]  # fmt: skip
    return torch.stack(out).to(masks)

