"""Pseudo masks snapped to image segments (a training-time form of the paper's segment post-processing).

Each foreground proposal's Eq.1 mask is replaced by the graph segment of the image (OpenCV's
Felzenszwalb-Huttenlocher at the granularities of `--postprocess segments`, computed once per image
at its own size and cached: `data.segments`) that overlaps it best on the proposal's T x T grid, so
that the segmentation head learns outlines rather than the blob of a CAM. It is not in the paper:
`model.snap_pseudo_masks` turns it on.
"""
from typing import Sequence

import torch

from .pairwise import cell_centres


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


def snap_masks(segments: Sequence[torch.Tensor], rois: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Each pseudo mask `[N, T, T]` of `rois [N, 5]` (batch index, box) replaced by its best-overlapping
    segment of `segments[batch index]` (`[G, H, W]` ids in the pixels of the boxes)."""
    if len(rois) == 0:
        return masks
    out = [snap(m.bool().cpu(), roi_segment_ids(segments[int(r[0])], r[1:], m.shape[-1])) for m, r in zip(masks, rois)]
    return torch.stack(out).to(masks)
