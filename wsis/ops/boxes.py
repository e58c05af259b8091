"""Box ops: IoU and the three NMS variants (not differentiable: they select, they do not score)."""
from typing import Optional, Tuple

import torch

from . import _checks
from ._backend import use_triton_for
from ._library import ops


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair, `[N,4] x [M,4] -> [N,M]` or batched `[B,N,4] x [B,M,4] -> [B,N,M]`.

    Same numbers as `torchvision.ops.box_iou` (two empty boxes give NaN).
    """
    _checks.tensor(boxes1, "boxes1", (2, 3), last=4)
    _checks.tensor(boxes2, "boxes2", (2, 3), last=4)
    if boxes1.dim() != boxes2.dim() or (boxes1.dim() == 3 and boxes1.shape[0] != boxes2.shape[0]):
        raise ValueError(
            f"boxes1 {tuple(boxes1.shape)} and boxes2 {tuple(boxes2.shape)} must both be [N,4] or both [B,*,4] "
            "with the same B"
        )
    _checks.same_device(("boxes1", boxes1), ("boxes2", boxes2))
    _checks.same_dtype(("boxes1", boxes1), ("boxes2", boxes2))
    if use_triton_for(boxes1):
        return torch.ops.wsis_triton.box_iou(boxes1, boxes2)
    return ops.box_iou(boxes1, boxes2)


def _check_nms(boxes, scores, iou_threshold):
    _checks.tensor(boxes, "boxes", (2,), last=4)
    _checks.tensor(scores, "scores", (1,))
    _checks.length(scores, "scores", boxes.shape[0], "box")
    _checks.same_device(("boxes", boxes), ("scores", scores))
    _checks.same_dtype(("boxes", boxes), ("scores", scores))
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS, as `torchvision.ops.nms`: kept indices by decreasing score (ties: lower index)."""
    _check_nms(boxes, scores, iou_threshold)
    return ops.nms(boxes, scores, float(iou_threshold))


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category of `idxs`, as `torchvision.ops.batched_nms`."""
    _check_nms(boxes, scores, iou_threshold)
    _checks.tensor(idxs, "idxs", (1,), floating=False)
    if idxs.is_floating_point() or idxs.is_complex():
        raise TypeError(f"idxs must be an integer tensor, got {idxs.dtype}")
    _checks.length(idxs, "idxs", boxes.shape[0], "box")
    _checks.same_device(("boxes", boxes), ("idxs", idxs))
    return ops.batched_nms(boxes, scores, idxs, float(iou_threshold))


def multiclass_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    score_threshold: float = 0.0,
    max_per_class: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-class NMS of every class at once.

    boxes: `[R,4]` shared by all classes or `[R,C,4]` per class; scores: `[R,C]`.
    Candidates of class c are the rows with `scores[r,c] > score_threshold`; after NMS at most
    `max_per_class` (highest scores) stay per class. Returns `(rows, classes)`, int64, by decreasing
    score (ties: lower `r*C + c`), so `scores[rows, classes]` are the kept scores.
    """
    _checks.tensor(scores, "scores", (2,))
    _checks.tensor(boxes, "boxes", (2, 3), last=4)
    R, C = scores.shape
    if boxes.shape[0] != R or (boxes.dim() == 3 and boxes.shape[1] != C):
        raise ValueError(f"boxes must have shape [{R}, 4] or [{R}, {C}, 4] to match scores, got {tuple(boxes.shape)}")
    _checks.same_device(("boxes", boxes), ("scores", scores))
    _checks.same_dtype(("boxes", boxes), ("scores", scores))
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
    if max_per_class is not None and max_per_class < 0:
        raise ValueError(f"max_per_class must be None or >= 0, got {max_per_class}")
    limit = -1 if max_per_class is None else int(max_per_class)
    return ops.multiclass_nms(boxes, scores, float(iou_threshold), float(score_threshold), limit)


@torch.library.register_fake("wsis::box_iou")
def _(boxes1, boxes2):
    return boxes1.new_empty(boxes1.shape[:-1] + boxes2.shape[-2:-1])


def _dynamic_index(like, n_max):
    n = torch.library.get_ctx().new_dynamic_size(max=n_max) if n_max > 0 else 0
    return like.new_empty((n,), dtype=torch.int64)


@torch.library.register_fake("wsis::nms")
def _(boxes, scores, iou_threshold):
    return _dynamic_index(boxes, boxes.shape[0])


@torch.library.register_fake("wsis::batched_nms")
def _(boxes, scores, idxs, iou_threshold):
    return _dynamic_index(boxes, boxes.shape[0])


@torch.library.register_fake("wsis::multiclass_nms")
def _(boxes, scores, iou_threshold, score_threshold, max_per_class):
    rows = _dynamic_index(scores, scores.numel())
    return rows, torch.empty_like(rows)
