import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from ..reference import gap_weights


@triton.jit
def _weighted_gap_kernel(x_ptr, w_ptr, out_ptr, P, BLOCK: tl.constexpr):
    m = tl.program_id(0)
    p = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + m * P + p, mask=p < P, other=0.0)
    w = tl.load(w_ptr + p, mask=p < P, other=0.0)
    tl.store(out_ptr + m, tl.sum(x * w, axis=0))


@triton.jit
def _weighted_gap_backward_kernel(g_ptr, w_ptr, out_ptr, P, BLOCK: tl.constexpr):
    m = tl.program_id(0)
    p = tl.arange(0, BLOCK)
    g = tl.load(g_ptr + m)
    w = tl.load(w_ptr + p, mask=p < P, other=0.0)
    tl.store(out_ptr + m * P + p, g * w, mask=p < P)


@triton.jit
def _cam_pseudo_masks_kernel(cams_ptr, mean_ptr, mask_ptr, L, maps, P, xi, BLOCK: tl.constexpr):
    m = tl.program_id(0)
    p = tl.arange(0, BLOCK)
    valid = p < P
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for level in range(0, L):
        v = tl.load(cams_ptr + (level * maps + m) * P + p, mask=valid, other=0.0)
        lo = tl.min(tl.where(valid, v, float("inf")), axis=0)
        hi = tl.max(tl.where(valid, v, float("-inf")), axis=0)
        rng = hi - lo
        acc += tl.where(rng > 0, (v - lo) / tl.where(rng > 0, rng, 1.0), 0.0)
    mean = acc / L
    tl.store(mean_ptr + m * P + p, mean, mask=valid)
    tl.store(mask_ptr + m * P + p, (mean > xi).to(tl.int8), mask=valid)


def _block(p: int) -> int:
    return triton.next_power_of_2(max(p, 1))


@triton_op("wsis_triton::weighted_gap", mutates_args=())
def weighted_gap(x: torch.Tensor, sigma: float) -> torch.Tensor:
    x = x.contiguous()
    R, K, H, W = x.shape
    out = x.new_empty((R, K))
    if out.numel():
        w = gap_weights(H, W, sigma, x.dtype, x.device)
        wrap_triton(_weighted_gap_kernel)[(R * K,)](x, w, out, H * W, BLOCK=_block(H * W))
    return out


@triton_op("wsis_triton::weighted_gap_backward", mutates_args=())
def weighted_gap_backward(grad: torch.Tensor, sigma: float, height: int, width: int) -> torch.Tensor:
    grad = grad.contiguous()
    out = grad.new_empty(tuple(grad.shape) + (height, width))
    if out.numel():
        w = gap_weights(height, width, sigma, grad.dtype, grad.device)
        wrap_triton(_weighted_gap_backward_kernel)[(grad.numel(),)](grad, w, out, height * width, BLOCK=_block(height * width))
    return out


def _setup_context(ctx, inputs, output):
    x, sigma = inputs
    ctx.sigma = sigma
    ctx.grid = tuple(x.shape[2:])


def _backward(ctx, grad):
    return torch.ops.wsis_triton.weighted_gap_backward(grad, ctx.sigma, *ctx.grid), None


weighted_gap.register_autograd(_backward, setup_context=_setup_context)


@triton_op("wsis_triton::cam_pseudo_masks", mutates_args=())
def cam_pseudo_masks(cams: torch.Tensor, xi: float) -> tuple[torch.Tensor, torch.Tensor]:
    if cams.dtype != torch.float32:
        raise TypeError(f"the Triton cam_pseudo_masks takes float32 cams, got {cams.dtype}")
    cams = cams.contiguous()
    L, R, K, H, W = cams.shape
    mean = cams.new_empty((R, K, H, W))
    mask = torch.empty((R, K, H, W), dtype=torch.bool, device=cams.device)
    if mean.numel():
        wrap_triton(_cam_pseudo_masks_kernel)[(R * K,)](
            cams, mean, mask.view(torch.int8), L, R * K, H * W, xi, BLOCK=_block(H * W)
        )
    return mean, mask
