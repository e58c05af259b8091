"""Pseudo masks snapped to image segments (a training-time form of the paper's segment post-processing).

Each foreground proposal's Eq.1 mask is replaced by the graph segment of the image (OpenCV's
Felzenszwalb-Huttenlocher at the granularities of `--postprocess segments`, computed once per image
at its own size and cached: `data.segments`) that overlaps it best on the proposal's T x T grid, so
that the segmentation head learns outlines rather than the blob of a CAM. It is not in the paper:
`model.snap_pseudo_masks` turns it on.
"""
from typing import Optional, Sequence, Tuple

import torch

from .. import ops
from ..data.segments import covered_regions, region_boxes
from .pairwise import cell_centres


def roi_segment_ids(segments: torch.Tensor, roi: torch.Tensor, size: int) -> torch.Tensor:
    """The segment ids `[G, size, size]` at the cell centres of a `size x size` grid over `roi` (x1, y1, x2, y2)."""
    _, h, w = segments.shape
    x, y = cell_centres(roi.float().cpu()[None], size)
    xs, ys = x[0].floor().long().clamp(0, w - 1), y[0].floor().long().clamp(0, h - 1)
    return segments[:, ys[:, None], xs[None, :]]


def best_segment(mask: torch.Tensor, ids: torch.Tensor, box_fit: Optional[torch.Tensor] = None,
                 box_weight: float = 0.0) -> Tuple[Optional[int], float]:  # fmt: skip
    """The id in `ids [G, T, T]` (cells sharing an id, at any granularity) whose cells have the highest
    IoU with the bool `mask [T, T]`, and that IoU; (None, 0) when the mask is empty or no segment
    overlaps it. With `box_fit` (per id, the IoU of its box with the roi's), the id of highest
    `IoU + box_weight * box_fit` among those that overlap the mask, and the highest IoU."""
    if not mask.any():
        return None, 0.0
    flat = ids.reshape(-1)
    unique, inverse = flat.unique(return_inverse=True)
    cells = mask.reshape(-1).repeat(len(ids)).float()
    area = torch.zeros(len(unique)).index_add_(0, inverse, torch.ones_like(cells))
    inter = torch.zeros(len(unique)).index_add_(0, inverse, cells)
    iou = inter / (area + mask.sum() - inter)
    top = float(iou.max())
    if top <= 0:
        return None, 0.0
    rank = iou if box_fit is None else torch.where(iou > 0, iou + box_weight * box_fit[unique.long()], -1.0)
    return int(unique[int(rank.argmax())]), top


def snap(mask: torch.Tensor, ids: torch.Tensor, superpixel_iou: float = 0.0, superpixel_cover: float = 0.6,
         box_fit: Optional[torch.Tensor] = None, box_weight: float = 0.0) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:  # fmt: skip
    """`mask` replaced by the cells of its `best_segment` in `ids` (`box_fit` and `box_weight` as
    there), or, where no segment reaches an IoU of `superpixel_iou`, by the finest segments
    (`ids[0]`) it covers for at least `superpixel_cover` of their cells (as the post-processing
    does, docs/USAGE.md, Post-processing); with the ids it took (None, and the mask itself, when it took none)."""
    best, iou = best_segment(mask, ids, box_fit, box_weight)
    if best is not None and iou < superpixel_iou:
        fine = ids[0]
        covered = torch.from_numpy(covered_regions(mask.numpy(), fine.numpy(), superpixel_cover))
        if covered.any():
            return covered[fine.long()], torch.nonzero(covered)[:, 0].to(fine.dtype)
    if best is None:
        return mask, None
    return (ids == best).any(0), torch.tensor([best])


def segment_box(segments: torch.Tensor, taken: torch.Tensor) -> torch.Tensor:
    """The box (x1, y1, x2, y2, pixel edges) of the segment ids `taken` in the whole id map `[G, H, W]`."""
    ys, xs = torch.nonzero(torch.isin(segments, taken).any(0), as_tuple=True)
    return torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


def snap_masks(segments: Sequence[torch.Tensor], rois: torch.Tensor, masks: torch.Tensor, with_boxes: bool = False,
               superpixel_iou: float = 0.0, superpixel_cover: float = 0.6,
               box_weight: float = 0.0) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:  # fmt: skip
    """Each pseudo mask `[N, T, T]` of `rois [N, 5]` (batch index, box) `snap`ped to the segments of
    `segments[batch index]` (`[G, H, W]` ids in the pixels of the boxes, finest granularity first),
    preferring by `box_weight` the segments whose box in the whole image fits the roi's;
    `with_boxes`: also the extent of what it took in the whole image, `[N, 4]` (NaN where the mask
    was kept)."""
    snapped, boxes, extents = [], [], {}
    for m, r in zip(masks, rois):
        b = int(r[0])
        image = segments[b]
        fit = None
        if box_weight > 0:
            if b not in extents:  # each image's segment boxes once
                extents[b] = torch.from_numpy(region_boxes(image.numpy()))
            fit = ops.box_iou(extents[b], r[None, 1:].float().cpu())[:, 0]
        new, taken = snap(m.bool().cpu(), roi_segment_ids(image, r[1:], m.shape[-1]), superpixel_iou, superpixel_cover,
                          fit, box_weight)  # fmt: skip
        snapped.append(new)
        if with_boxes:
            boxes.append(torch.full((4,), float("nan")) if taken is None else segment_box(image, taken))
    if not snapped:
        return masks, (rois.new_zeros((0, 4)) if with_boxes else None)
    return torch.stack(snapped).to(masks), (torch.stack(boxes).to(rois) if with_boxes else None)
