"""Pseudo masks snapped to image segments (a training-time form of the paper's segment post-processing).

Each foreground proposal's Eq.1 mask is replaced by the graph segment of the image (OpenCV's
Felzenszwalb-Huttenlocher at the granularities of `--postprocess segments`, computed once per image
at its own size and cached: `data.segments`) that overlaps it best on the proposal's T x T grid, so
that the segmentation head learns outlines rather than the blob of a CAM. It is not in the paper:
`model.snap_pseudo_masks` turns it on.
"""
from typing import Optional, Sequence, Tuple

import torch

from .pairwise import cell_centres


def roi_segment_ids(segments: torch.Tensor, roi: torch.Tensor, size: int) -> torch.Tensor:
    """The segment ids `[G, size, size]` at the cell centres of a `size x size` grid over `roi` (x1, y1, x2, y2)."""
    _, h, w = segments.shape
    x, y = cell_centres(roi.float().cpu()[None], size)
    xs, ys = x[0].floor().long().clamp(0, w - 1), y[0].floor().long().clamp(0, h - 1)
    return segments[:, ys[:, None], xs[None, :]]


def best_segment(mask: torch.Tensor, ids: torch.Tensor) -> Optional[int]:
    """The id in `ids [G, T, T]` (cells sharing an id, at any granularity) whose cells have the highest
    IoU with the bool `mask [T, T]`; None when the mask is empty or no segment overlaps it."""
    if not mask.any():
        return None
    flat = ids.reshape(-1)
    unique, inverse = flat.unique(return_inverse=True)
    cells = mask.reshape(-1).repeat(len(ids)).float()
    area = torch.zeros(len(unique)).index_add_(0, inverse, torch.ones_like(cells))
    inter = torch.zeros(len(unique)).index_add_(0, inverse, cells)
    iou = inter / (area + mask.sum() - inter)
    best = int(iou.argmax())
    return int(unique[best]) if iou[best] > 0 else None


def snap(mask: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`mask` replaced by the cells of its `best_segment` in `ids`; the mask itself when there is none."""
    best = best_segment(mask, ids)
    return mask if best is None else (ids == best).any(0)


def segment_box(segments: torch.Tensor, segment: int) -> torch.Tensor:
    """The box (x1, y1, x2, y2, pixel edges) of segment id `segment` in the whole id map `[G, H, W]`."""
    ys, xs = torch.nonzero((segments == segment).any(0), as_tuple=True)
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


def snap_masks(segments: Sequence[torch.Tensor], rois: torch.Tensor, masks: torch.Tensor,
               with_boxes: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:  # fmt: skip
    """Each pseudo mask `[N, T, T]` of `rois [N, 5]` (batch index, box) replaced by its best-overlapping
    segment of `segments[batch index]` (`[G, H, W]` ids in the pixels of the boxes); `with_boxes`:
    also that segment's extent in the whole image, `[N, 4]` (NaN where the mask was kept)."""
    snapped, boxes = [], []
    for m, r in zip(masks, rois):
        image = segments[int(r[0])]
        ids = roi_segment_ids(image, r[1:], m.shape[-1])
        best = best_segment(m.bool().cpu(), ids)
        snapped.append(m.bool().cpu() if best is None else (ids == best).any(0))
        if with_boxes:
            boxes.append(torch.full((4,), float("nan")) if best is None else segment_box(image, best))
    if not snapped:
        return masks, (rois.new_zeros((0, 4)) if with_boxes else None)
    return torch.stack(snapped).to(masks), (torch.stack(boxes).to(rois) if with_boxes else None)
