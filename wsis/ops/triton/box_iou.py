import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton


@triton.jit
def iou(ax1, ay1, ax2, ay2, area_a, bx1, by1, bx2, by2, area_b):
    """IoU with torchvision's arithmetic (broadcasting); two empty boxes give NaN."""
    w = tl.maximum(tl.minimum(ax2, bx2) - tl.maximum(ax1, bx1), 0)
    h = tl.maximum(tl.minimum(ay2, by2) - tl.maximum(ay1, by1), 0)
    inter = w * h
    return inter / (area_a + area_b - inter)


@triton.jit
def _box_iou_kernel(a_ptr, b_ptr, out_ptr, N, M, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr):
    batch = tl.program_id(2)
    i = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    j = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mi, mj = i < N, j < M
    a = a_ptr + (batch * N + i) * 4
    b = b_ptr + (batch * M + j) * 4
    ax1, ay1 = tl.load(a, mask=mi), tl.load(a + 1, mask=mi)
    ax2, ay2 = tl.load(a + 2, mask=mi), tl.load(a + 3, mask=mi)
    bx1, by1 = tl.load(b, mask=mj), tl.load(b + 1, mask=mj)
    bx2, by2 = tl.load(b + 2, mask=mj), tl.load(b + 3, mask=mj)
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    out = iou(ax1[:, None], ay1[:, None], ax2[:, None], ay2[:, None], area_a[:, None],
              bx1[None, :], by1[None, :], bx2[None, :], by2[None, :], area_b[None, :])  # fmt: skip
    tl.store(out_ptr + (batch * N + i[:, None]) * M + j[None, :], out, mask=mi[:, None] & mj[None, :])


@triton_op("wsis_triton::box_iou", mutates_args=())
def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    batched = boxes1.dim() == 3
    a = (boxes1 if batched else boxes1.unsqueeze(0)).contiguous()
    b = (boxes2 if batched else boxes2.unsqueeze(0)).contiguous()
    B, N, M = a.shape[0], a.shape[1], b.shape[1]
    out = a.new_empty((B, N, M))
    if out.numel():
        grid = (triton.cdiv(M, 64), triton.cdiv(N, 32), B)
        wrap_triton(_box_iou_kernel)[grid](a, b, out, N, M, BLOCK_N=32, BLOCK_M=64)
    return out if batched else out.squeeze(0)
