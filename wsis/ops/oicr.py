"""oicr_assign: the targets of an OICR refinement branch (paper A.2.3, docs/DESIGN.md §2);
multi_seed_assign: the same targets from several seeds per class (MIST's rule); and
cluster_seed_assign: from one seed per class chosen as the centre of its proposal cluster (PCL's rule)."""
import math
from typing import Tuple

import torch

from . import _checks
from ._backend import use_triton_for
from ._library import ops
from .boxes import box_iou, nms


def _check_assign(boxes, scores, image_labels, fg_thresh, bg_thresh) -> None:
    _checks.tensor(boxes, "boxes", (2,), last=4)
    _checks.tensor(scores, "scores", (2,))
    _checks.tensor(image_labels, "image_labels", (1,), floating=False)
    _checks.length(scores, "scores", boxes.shape[0], "box")
    if image_labels.shape[0] != scores.shape[1]:
        raise ValueError(
            f"image_labels must have {scores.shape[1]} entries (one per column of scores), "
            f"got shape {tuple(image_labels.shape)}"
        )
    _checks.same_device(("boxes", boxes), ("scores", scores), ("image_labels", image_labels))
    _checks.same_dtype(("boxes", boxes), ("scores", scores))
    if not 0.0 <= bg_thresh <= fg_thresh:
        raise ValueError(f"need 0 <= bg_thresh <= fg_thresh, got bg_thresh={bg_thresh}, fg_thresh={fg_thresh}")


def oicr_assign(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_thresh: float = 0.5,
    bg_thresh: float = 0.1,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo-labels of one image from the previous stage's scores.

    boxes `[R,4]`; scores `[R,C]` foreground scores (no background column); image_labels `[C]`
    with 1 for the classes present. For each present class in increasing order the seed is the
    highest-scoring proposal not already a seed (ties: lowest row). Each proposal takes the seed
    it overlaps most (ties: the earlier class). Returns `labels` (int64, seed class + 1 where that
    IoU >= fg_thresh, else 0), `weights` (the seed's score; 0 where IoU < bg_thresh),
    `seed_index` (int64 row of the seed) and `max_iou`. Two empty boxes count as IoU 0.
    """
    _check_assign(boxes, scores, image_labels, fg_thresh, bg_thresh)
    if use_triton_for(boxes):
        return torch.ops.wsis_triton.oicr_assign(boxes, scores, image_labels, float(fg_thresh), float(bg_thresh))
    return ops.oicr_assign(boxes, scores, image_labels, float(fg_thresh), float(bg_thresh))


def multi_seed_assign(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_thresh: float = 0.5,
    bg_thresh: float = 0.1,
    top: float = 0.15,
    seed_nms: float = 0.2,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`oicr_assign`'s targets from several seeds per present class (Ren et al., MIST, CVPR 2020).

    A class's seeds are its `ceil(top * R)` highest-scoring proposals (ties: lowest row) after
    greedy NMS at IoU `seed_nms`; OICR keeps only the first. Each proposal then takes the seed it
    overlaps most (ties: the earlier class, then the higher-scoring seed), with OICR's thresholds and
    weights. Same inputs, checks and outputs as `oicr_assign`; built from `box_iou` and `nms`.
    """
    candidates = _top_candidates(boxes, scores, image_labels, fg_thresh, bg_thresh, top)
    if candidates is None:
        return _no_targets(boxes, scores)
    seeds, seed_classes = [], []
    for c, order in candidates.items():
        keep = order[nms(boxes[order], scores[order, c].contiguous(), seed_nms)]
        seeds.append(keep)
        seed_classes.append(torch.full_like(keep, c))
    seeds, seed_classes = torch.cat(seeds), torch.cat(seed_classes)
    return _assign_to_seeds(boxes, seeds, seed_classes, scores[seeds, seed_classes], fg_thresh, bg_thresh)


def _assign_to_seeds(boxes, seeds, seed_classes, seed_weights, fg_thresh: float, bg_thresh: float):
    """OICR's labelling given the seeds: each proposal takes the seed it overlaps most (the first
    maximum: seeds in the order given), foreground from `fg_thresh`, weight 0 below `bg_thresh`."""
    iou = torch.nan_to_num(box_iou(boxes, boxes[seeds]), nan=0.0)
    max_iou, j = iou.max(1)
    labels = torch.where(max_iou >= fg_thresh, seed_classes[j] + 1, 0)
    weights = torch.where(max_iou < bg_thresh, torch.zeros_like(max_iou), seed_weights[j].to(max_iou.dtype))
    return labels, weights, seeds[j], max_iou


def _top_candidates(boxes, scores, image_labels, fg_thresh: float, bg_thresh: float, top: float):
    """The seed rules' checks, then for each present class (in increasing order) its `ceil(top * R)`
    highest-scoring rows (ties: lowest row); None where there is no box."""
    _check_assign(boxes, scores, image_labels, fg_thresh, bg_thresh)
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top must be in (0, 1], got {top}")
    classes = torch.nonzero(image_labels == 1).flatten().tolist()
    if not classes:
        raise ValueError("image_labels has no positive class")
    if boxes.shape[0] == 0:
        return None
    k = max(1, math.ceil(top * boxes.shape[0] - 1e-9))  # 0.15 * 100 is 15.000000000000002 in floating point
    return {c: torch.sort(scores[:, c], descending=True, stable=True).indices[:k] for c in classes}


def _no_targets(boxes, scores):
    e = boxes.new_empty(0)
    return e.long(), scores.new_empty(0), e.long(), e


def cluster_seed_assign(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_thresh: float = 0.5,
    bg_thresh: float = 0.1,
    top: float = 0.15,
    graph_iou: float = 0.4,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`oicr_assign`'s targets from one seed per present class, the centre of its proposal cluster
    (Tang et al., PCL, TPAMI 2018): among the class's `ceil(top * R)` highest-scoring proposals, the
    one that overlaps the most of them at IoU > `graph_iou` (itself included; ties: the higher score,
    then the lower row), weighted by the highest score among those it overlaps. A whole object is
    overlapped by many of the high-scoring boxes, a part of it (or a hole) by few, so the centre is
    less often a part than OICR's top box. Then OICR's labelling and thresholds (ties: the earlier
    class). Same inputs, checks and outputs as `oicr_assign`; built from `box_iou`.
    """
    candidates = _top_candidates(boxes, scores, image_labels, fg_thresh, bg_thresh, top)
    if candidates is None:
        return _no_targets(boxes, scores)
    seeds, seed_weights = [], []
    for c, order in candidates.items():
        linked = torch.nan_to_num(box_iou(boxes[order], boxes[order]), nan=0.0) > graph_iou
        linked |= torch.eye(len(order), dtype=torch.bool, device=boxes.device)  # a box with NaN links to itself
        centre = int(torch.argmax(linked.sum(1)))  # the first maximum: the higher-scoring candidate
        seeds.append(order[centre])
        seed_weights.append(scores[order[linked[centre]], c].max())
    seed_classes = torch.tensor(list(candidates), dtype=torch.int64, device=boxes.device)
    return _assign_to_seeds(boxes, torch.stack(seeds), seed_classes, torch.stack(seed_weights), fg_thresh, bg_thresh)


@torch.library.register_fake("wsis::oicr_assign")
def _(boxes, scores, image_labels, fg_thresh, bg_thresh):
    r = boxes.shape[0]
    return (
        boxes.new_empty((r,), dtype=torch.int64),
        scores.new_empty((r,)),
        boxes.new_empty((r,), dtype=torch.int64),
        boxes.new_empty((r,)),
    )
