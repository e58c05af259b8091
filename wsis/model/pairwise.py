"""BoxInst's pairwise colour term (Tian et al., CVPR 2021) on the per-proposal masks.

Two neighbouring cells of a proposal's T x T grid whose colours are alike should get the same
label. Colours are compared in CIE LAB, on the image average-pooled by 4 (as BoxInst does), at the
cell centres of the proposal; neighbours are 2 cells apart in the 8 directions; a pair counts when
`exp(-|lab_i - lab_j| / 2) >= tau`. The loss is `-log(p_i p_j + (1 - p_i)(1 - p_j))` averaged over
the counted pairs. It is not a term of the paper: `model.pairwise_weight` (0 = off) adds it.
"""
import torch
import torch.nn.functional as F

_POOL = 4  # the image is compared at 1/4 resolution: less noise, as BoxInst
_THETA = 2.0  # BoxInst's colour-distance scale
_DILATION = 2


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIE LAB (D65) of sRGB images `[B, 3, H, W]` in [0, 1]."""
    rgb = rgb.clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    to_xyz = rgb.new_tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]])  # fmt: skip
    xyz = torch.einsum("ij,bjhw->bihw", to_xyz, linear)
    xyz = xyz / rgb.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def cell_centres(boxes: torch.Tensor, size: int):
    """The pixel coordinates `(x [N, size], y [N, size])` of the cell centres of a `size x size` grid over each box `[N, 4]`."""
    t = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5) / size
    return boxes[:, 0, None] + t * (boxes[:, 2] - boxes[:, 0])[:, None], boxes[:, 1, None] + t * (boxes[:, 3] - boxes[:, 1])[:, None]


def roi_colours(lab: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
    """The LAB colour at the centre of each cell of a `size x size` grid over each roi, `[S, 3, size, size]`.

    `lab [B, 3, H, W]` at full resolution; `rois [S, 5]` in its pixels."""
    small = F.avg_pool2d(lab, _POOL, _POOL)
    h, w = small.shape[-2] * _POOL, small.shape[-1] * _POOL  # the pixels the pooled map covers
    x, y = cell_centres(rois[:, 1:].to(lab.dtype), size)
    gx = (2 * x / w - 1)[:, None, :].expand(-1, size, -1)
    gy = (2 * y / h - 1)[:, :, None].expand(-1, -1, size)
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(small[rois[:, 0].long()], grid, mode="bilinear", padding_mode="border", align_corners=False)


def _pairs(x: torch.Tensor, dy: int, dx: int):
    """The two ends of every pair `(i, i + (dy, dx))` inside the last two dims of `x`."""
    h, w = x.shape[-2:]
    a = x[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    b = x[..., max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
    return a, b


def pairwise_loss(logits: torch.Tensor, lab: torch.Tensor, tau: float) -> torch.Tensor:
    """The mean of `-log P(same label)` over the similar neighbour pairs; `logits [S, T, T]`, `lab [S, 3, T, T]`."""
    fg, bg = F.logsigmoid(logits.float()), F.logsigmoid(-logits.float())
    total = logits.new_zeros((), dtype=torch.float32)
    count = 0
    d = _DILATION
    for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):  # each unordered neighbour pair once
        la, lb = _pairs(lab, dy, dx)
        similar = torch.exp(-(la - lb).norm(dim=1) / _THETA) >= tau
        fa, fb = _pairs(fg, dy, dx)
        ba, bb = _pairs(bg, dy, dx)
        same = torch.logaddexp(fa + fb, ba + bb)
        total = total - (same * similar).sum()
        count += int(similar.sum())
    return total / max(count, 1)
