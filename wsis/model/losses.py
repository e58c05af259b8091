"""The losses of Sec. 3.3 (Eq.3-9) and the R-CNN box offsets of Eq.14.

Normalisation: Eq.3 sums over classes; Eq.4, Eq.5 and Eq.7 divide by the number of proposals
they sum over. Eq.9 as printed sums over proposals without dividing; we divide by their number
too, as Eq.7 does, so the segmentation loss does not grow with the number of selected proposals.
"""
import math

import torch
import torch.nn.functional as F

_EPS = 1e-6
# The largest width/height change a decoded box may take: exp(4.135) = 62.5x, as in Fast R-CNN.
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def midn_loss(phi: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq.3: binary cross-entropy of image-level scores `phi [C]` against labels `y [C]`, summed over classes."""
    phi = phi.clamp(_EPS, 1 - _EPS)
    return -(labels * phi.log() + (1 - labels) * (1 - phi).log()).sum()


def refine_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq.4: `-1/|R| sum_r w_r log x_{r, y_r}` for `logits [R, C+1]`, targets from `oicr_assign`."""
    logp = F.log_softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return -(weights * logp).sum() / max(len(logits), 1)


def encode(proposals: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq.14: offsets `(t_x, t_y, t_w, t_h)` that move each proposal onto its target box."""
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    gw, gh = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    px, py = proposals[:, 0] + 0.5 * pw, proposals[:, 1] + 0.5 * ph
    gx, gy = targets[:, 0] + 0.5 * gw, targets[:, 1] + 0.5 * gh
    return torch.stack([(gx - px) / pw, (gy - py) / ph, (gw / pw).log(), (gh / ph).log()], 1)


def decode(proposals: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """The inverse of `encode`: boxes from proposals `[R,4]` and offsets `[R,...,4]`."""
    shape = (-1,) + (1,) * (offsets.dim() - 2)
    pw, ph = proposals[:, 2] - proposals[:, 0], proposals[:, 3] - proposals[:, 1]
    px, py = proposals[:, 0] + 0.5 * pw, proposals[:, 1] + 0.5 * ph
    pw, ph, px, py = (v.reshape(shape) for v in (pw, ph, px, py))
    cx, cy = px + offsets[..., 0] * pw, py + offsets[..., 1] * ph
    w = pw * offsets[..., 2].clamp(max=_MAX_LOG_SCALE).exp()
    h = ph * offsets[..., 3].clamp(max=_MAX_LOG_SCALE).exp()
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def regression_loss(offsets: torch.Tensor, targets: torch.Tensor, paired: torch.Tensor, norm: str = "all") -> torch.Tensor:
    """Eq.5: smooth-L1 between predicted and target offsets over the paired proposals, divided by |R|
    (`norm="all"`) or by the number of paired ones (`"paired"`)."""
    diff = F.smooth_l1_loss(offsets.float()[paired], targets[paired], reduction="sum", beta=1.0)
    return diff / max(len(offsets) if norm == "all" else int(paired.sum()), 1)


def cam_loss(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Eq.7: binary cross-entropy of the softmax scores `p [S, K]` against one-hot pseudo-labels."""
    p = F.softmax(logits.float(), dim=1).clamp(_EPS, 1 - _EPS)
    return -(onehot * p.log() + (1 - onehot) * (1 - p).log()).sum() / max(len(logits), 1)


def seg_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq.9: per-pixel binary cross-entropy of `logits [S, K, T, T]` against the Eq.1 masks, / T^2 / S
    (K = 1 for the assigned channel only)."""
    t2 = logits.shape[-1] * logits.shape[-2]
    total = F.binary_cross_entropy_with_logits(logits.float(), masks.float(), reduction="sum")
    return total / t2 / max(len(logits), 1)


# The terms of Eq.2 that the community adds to its Detector only (MIDN's `cls` and OICR's `refine`).
COMMUNITY_TERMS = ("img", "seg", "reg", "pairwise")


def community_weight(iteration: int, start: int) -> float:
    """The factor on the community's terms at `iteration` (0-based) under `solver.community_start`:
    0 before `start`, rising linearly to 1 at `2 * start`, 1 throughout when `start` is 0."""
    if start <= 0:
        return 1.0
    return min(1.0, max(0.0, (iteration - start) / start))
