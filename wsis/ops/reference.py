"""Pure-PyTorch references of every op: the oracle of the tests and the baseline of the benchmarks.

Written for clarity, not speed; each follows docs/DESIGN.md §2 and, where torchvision has the op,
torchvision's exact arithmetic.
"""
import math
from typing import Optional, Tuple

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    lt = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    rb = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(boxes1)[..., :, None] + box_area(boxes2)[..., None, :] - inter)


def _by_score(indices: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """indices by decreasing scores[indices], ties by increasing index."""
    indices = indices.sort().values
    return indices[torch.sort(scores[indices], descending=True, stable=True).indices]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    order = torch.sort(scores, descending=True, stable=True).indices
    order = order[~scores[order].isnan()]  # a NaN score is never kept and suppresses nothing
    over = (box_iou(boxes[order], boxes[order]) > iou_threshold).tolist()
    suppressed = [False] * len(order)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed = [s or o for s, o in zip(suppressed, over[i])]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes, scores, idxs, iou_threshold) -> torch.Tensor:
    kept = [
        torch.nonzero(idxs == c).flatten()[nms(boxes[idxs == c], scores[idxs == c], iou_threshold)]
        for c in torch.unique(idxs)
    ]
    kept = torch.cat(kept) if kept else idxs.new_empty(0, dtype=torch.long)
    return _by_score(kept, scores)


def multiclass_nms(
    boxes, scores, iou_threshold, score_threshold=0.0, max_per_class: Optional[int] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    R, C = scores.shape
    flat = []
    for c in range(C):
        rows = torch.nonzero(scores[:, c] > score_threshold).flatten()
        b = boxes[rows, c] if boxes.dim() == 3 else boxes[rows]
        kept = rows[nms(b, scores[rows, c], iou_threshold)]
        flat.append(kept[:max_per_class] * C + c)
    flat = _by_score(torch.cat(flat), scores.flatten()) if flat else scores.new_empty(0, dtype=torch.long)
    return flat // max(C, 1), flat % max(C, 1)


def _round_half_away(v: float) -> int:
    """round() of C (half away from zero), clamped to +-2^29 as the kernels clamp it."""
    return int(min(max(math.copysign(math.floor(abs(v) + 0.5), v), -(2**29)), 2**29))


def roi_pool(input: torch.Tensor, rois: torch.Tensor, output_size, spatial_scale: float) -> torch.Tensor:
    """torchvision's roi_pool; differentiable (the gradient goes to each bin's maximum)."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, C, H, W = input.shape
    scale = torch.tensor(spatial_scale, dtype=input.dtype)
    outs = []
    for roi in rois.detach().cpu():
        b = int(roi[0])
        out = input.new_zeros(C, ph, pw)
        if not torch.isfinite(roi[1:] * scale).all():  # a NaN or infinite coordinate pools nothing
            outs.append(out)
            continue
        x1, y1, x2, y2 = (_round_half_away(float(v * scale)) for v in roi[1:])
        bin_h = torch.tensor(max(y2 - y1 + 1, 1), dtype=input.dtype) / ph
        bin_w = torch.tensor(max(x2 - x1 + 1, 1), dtype=input.dtype) / pw
        for i in range(ph):
            hs = min(max(int(torch.floor(i * bin_h)) + y1, 0), H)
            he = min(max(int(torch.ceil((i + 1) * bin_h)) + y1, 0), H)
            for j in range(pw):
                ws = min(max(int(torch.floor(j * bin_w)) + x1, 0), W)
                we = min(max(int(torch.ceil((j + 1) * bin_w)) + x1, 0), W)
                if he > hs and we > ws:
                    out = out.index_put((torch.arange(C), torch.tensor(i), torch.tensor(j)),
                                        input[b, :, hs:he, ws:we].flatten(1).max(1).values)
        outs.append(out)
    return torch.stack(outs) if outs else input.new_zeros(0, C, ph, pw)


def oicr_assign(boxes, scores, image_labels, fg_thresh=0.5, bg_thresh=0.1):
    R, C = scores.shape
    classes = torch.nonzero(image_labels == 1).flatten().tolist()
    if not classes:
        raise ValueError("image_labels has no positive class")
    taken = torch.zeros(R, dtype=torch.bool, device=boxes.device)
    seeds, seed_classes = [], []
    for c in classes:
        if taken.all():
            break
        s = scores[:, c].masked_fill(taken, -math.inf)
        r = int(torch.argmax(s))  # argmax returns the first maximum
        if taken[r]:  # every remaining score is -inf; take the lowest free row
            r = int(torch.nonzero(~taken)[0])
        taken[r] = True
        seeds.append(r)
        seed_classes.append(c)
    if R == 0:
        e = boxes.new_empty(0)
        return e.long(), scores.new_empty(0), e.long(), e
    seeds_t = torch.tensor(seeds, device=boxes.device)
    iou = torch.nan_to_num(box_iou(boxes, boxes[seeds_t]), nan=0.0)
    max_iou, j = iou.max(1)  # max returns the first maximum: ties keep the earlier class
    cls_t = torch.tensor(seed_classes, device=boxes.device)
    labels = torch.where(max_iou >= fg_thresh, cls_t[j] + 1, 0)
    weights = scores[seeds_t[j], cls_t[j]]
    weights = torch.where(max_iou < bg_thresh, torch.zeros_like(weights), weights)
    return labels, weights, seeds_t[j], max_iou


def gap_weights(height: int, width: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    i = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    j = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    w = torch.exp(-(i[:, None] ** 2 + j[None, :] ** 2) / (2 * sigma * sigma))
    return (w / w.sum()).to(dtype=dtype, device=device)


def weighted_gap(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return (x * gap_weights(x.shape[2], x.shape[3], sigma, x.dtype, x.device)).sum((-2, -1))


def cam_pseudo_masks(cams: torch.Tensor, xi: float = 0.4) -> Tuple[torch.Tensor, torch.Tensor]:
    lo = cams.amin((-2, -1), keepdim=True)
    hi = cams.amax((-2, -1), keepdim=True)
    rng = hi - lo
    norm = torch.where(rng > 0, (cams - lo) / rng, torch.zeros_like(cams))
    mean = norm.sum(0) / cams.shape[0]
    return mean, mean > xi
