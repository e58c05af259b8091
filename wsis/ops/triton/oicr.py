import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from .box_iou import iou


@triton.jit
def _seed_kernel(scores_ptr, labels_ptr, taken_ptr, seed_row_ptr, seed_cls_ptr, n_seeds_ptr, R, C,
                 BLOCK: tl.constexpr):
    """One program: per positive class in order, the best row not yet taken (ties: lowest row)."""
    n = 0
    for c in range(0, C):
        if tl.load(labels_ptr + c) == 1.0:
            best_v = float("-inf")
            best_r = -1
            for start in range(0, R, BLOCK):
                r = start + tl.arange(0, BLOCK)
                ok = (r < R) & (tl.load(taken_ptr + r, mask=r < R, other=1) == 0)
                v = tl.load(scores_ptr + r * C + c, mask=ok, other=float("-inf")).to(tl.float32)
                cand_v = tl.max(v, axis=0)
                # lowest free row holding the block maximum
                cand_r = tl.min(tl.where(ok & (v == cand_v), r, R), axis=0)
                better = (cand_r < R) & ((best_r < 0) | (cand_v > best_v))
                best_v = tl.where(better, cand_v, best_v)
                best_r = tl.where(better, cand_r, best_r)
            if best_r >= 0:
                tl.store(taken_ptr + best_r, 1)
                tl.store(seed_row_ptr + n, best_r)
                tl.store(seed_cls_ptr + n, c)
                n += 1
    tl.store(n_seeds_ptr, n)


@triton.jit
def _assign_kernel(boxes_ptr, scores_ptr, seed_row_ptr, seed_cls_ptr, n_seeds_ptr, labels_ptr, weights_ptr,
                   seed_index_ptr, max_iou_ptr, R, C, fg_thresh, bg_thresh, BLOCK: tl.constexpr):
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = r < R
    b = boxes_ptr + r * 4
    x1, y1 = tl.load(b, mask=valid, other=0.0), tl.load(b + 1, mask=valid, other=0.0)
    x2, y2 = tl.load(b + 2, mask=valid, other=0.0), tl.load(b + 3, mask=valid, other=0.0)
    area = (x2 - x1) * (y2 - y1)
    best = tl.zeros((BLOCK,), dtype=x1.dtype)
    best_k = tl.zeros((BLOCK,), dtype=tl.int32)
    for k in range(0, tl.load(n_seeds_ptr)):
        s = boxes_ptr + tl.load(seed_row_ptr + k) * 4
        sx1, sy1, sx2, sy2 = tl.load(s), tl.load(s + 1), tl.load(s + 2), tl.load(s + 3)
        v = iou(x1, y1, x2, y2, area, sx1, sy1, sx2, sy2, (sx2 - sx1) * (sy2 - sy1))
        better = v > best  # strict: ties keep the earlier class; NaN never wins
        best = tl.where(better, v, best)
        best_k = tl.where(better, k, best_k)
    row = tl.load(seed_row_ptr + best_k, mask=valid, other=0)
    cls = tl.load(seed_cls_ptr + best_k, mask=valid, other=0)
    score = tl.load(scores_ptr + row * C + cls, mask=valid, other=0.0)
    tl.store(labels_ptr + r, tl.where(best >= fg_thresh, cls + 1, 0).to(tl.int64), mask=valid)
    tl.store(weights_ptr + r, tl.where(best < bg_thresh, 0.0, score), mask=valid)
    tl.store(seed_index_ptr + r, row.to(tl.int64), mask=valid)
    tl.store(max_iou_ptr + r, best, mask=valid)


@triton_op("wsis_triton::oicr_assign", mutates_args=())
def oicr_assign(
    boxes: torch.Tensor, scores: torch.Tensor, image_labels: torch.Tensor, fg_thresh: float, bg_thresh: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    labels_f = image_labels.to(torch.float32).contiguous()
    if not bool(labels_f.eq(1).any()):
        raise RuntimeError("image_labels has no positive class (no entry equal to 1)")
    boxes, scores = boxes.contiguous(), scores.contiguous()
    R, C = scores.shape
    dev = boxes.device
    labels = torch.empty(R, dtype=torch.int64, device=dev)
    weights = scores.new_empty(R)
    seed_index = torch.empty(R, dtype=torch.int64, device=dev)
    max_iou = boxes.new_empty(R)
    if R == 0:
        return labels, weights, seed_index, max_iou
    taken = torch.zeros(R, dtype=torch.int8, device=dev)
    seed_row = torch.zeros(C, dtype=torch.int32, device=dev)
    seed_cls = torch.zeros(C, dtype=torch.int32, device=dev)
    n_seeds = torch.zeros(1, dtype=torch.int32, device=dev)
    wrap_triton(_seed_kernel)[(1,)](scores, labels_f, taken, seed_row, seed_cls, n_seeds, R, C, BLOCK=1024)
    wrap_triton(_assign_kernel)[(triton.cdiv(R, 256),)](
        boxes, scores, seed_row, seed_cls, n_seeds, labels, weights, seed_index, max_iou, R, C, fg_thresh, bg_thresh,
        BLOCK=256,
    )
    return labels, weights, seed_index, max_iou
