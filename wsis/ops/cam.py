"""The IMG module's ops: Gaussian-weighted GAP and the Eq.1 pseudo masks."""
from typing import Tuple

import torch

from . import _checks
from ._backend import use_triton_for
from ._library import ops


def weighted_gap(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """`[R,K,T,T] -> [R,K]`: average with isotropic Gaussian weights centred on the grid, summing to 1.

    Weight of cell (i, j): `exp(-((i-c)^2 + (j-c)^2) / (2 sigma^2))`, `c = (T-1)/2`. Differentiable.
    """
    _checks.tensor(x, "x", (4,))
    _checks.positive(sigma, "sigma")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have a non-empty T x T grid, got shape {tuple(x.shape)}")
    if use_triton_for(x):
        return torch.ops.wsis_triton.weighted_gap(x, float(sigma))
    return ops.weighted_gap(x, float(sigma))


def cam_pseudo_masks(cams: torch.Tensor, xi: float = 0.4) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq.1 of the paper: `cams [L,R,K,T,T]` -> `(mean [R,K,T,T], mask bool [R,K,T,T])`.

    Each T x T map is min-max normalised to [0, 1] (a constant map becomes 0), the L levels are
    averaged, and `mask = mean > xi`. Pseudo-labels carry no gradient: `cams` is detached.
    """
    _checks.tensor(cams, "cams", (5,))
    if cams.shape[0] == 0:
        raise ValueError("cams must hold at least one level (L >= 1), got shape (0, ...)")
    cams = cams.detach()
    if use_triton_for(cams):
        return torch.ops.wsis_triton.cam_pseudo_masks(cams, float(xi))
    return ops.cam_pseudo_masks(cams, float(xi))


@torch.library.register_fake("wsis::weighted_gap")
def _(x, sigma):
    return x.new_empty(x.shape[:2])


@torch.library.register_fake("wsis::_weighted_gap_backward")
def _(grad, sigma, height, width):
    return grad.new_empty(tuple(grad.shape) + (height, width))


@torch.library.register_fake("wsis::cam_pseudo_masks")
def _(cams, xi):
    shape = cams.shape[1:]
    return cams.new_empty(shape), cams.new_empty(shape, dtype=torch.bool)


def _setup_context(ctx, inputs, output):
    x, sigma = inputs
    ctx.sigma = sigma
    ctx.grid = tuple(x.shape[2:])


def _backward(ctx, grad):
    return ops._weighted_gap_backward(grad, ctx.sigma, *ctx.grid), None


torch.library.register_autograd("wsis::weighted_gap", _backward, setup_context=_setup_context)
