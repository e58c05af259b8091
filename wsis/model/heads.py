"""The per-proposal heads: MIDN + OICR refinement + regressor (Sec. 3.2.1), IMG (3.2.2), segmentation (3.2.3)."""
import functools
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops


def _init(layer, std: Optional[float] = None):
    """Weights N(0, std^2) (the paper's FC init), or He init for a conv followed by ReLU; zero bias."""
    if std is None:
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    else:
        nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)
    return layer


def _fc(cin: int, cout: int, std: float) -> nn.Linear:
    return _init(nn.Linear(cin, cout), std)


@functools.lru_cache(maxsize=16)
def _upsample_taps(h: int, w: int, size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[9*h*w, size*size]: row (d, q) is input cell q of an h x w map, bilinearly upsampled to size x
    size (align_corners=False) and read through tap d of a 3x3 kernel with zero padding 1."""
    basis = torch.eye(h * w, dtype=torch.float64, device=device).reshape(h * w, 1, h, w)
    up = F.pad(F.interpolate(basis, size=(size, size), mode="bilinear", align_corners=False)[:, 0], (1, 1, 1, 1))
    taps = [up[:, dy : dy + size, dx : dx + size] for dy in range(3) for dx in range(3)]
    return torch.stack(taps).reshape(9 * h * w, size * size).to(dtype)  # built in float64, then rounded once


def conv3x3_upsampled(x: torch.Tensor, conv: nn.Conv2d, size: int) -> torch.Tensor:
    """`conv(F.interpolate(x, (size, size), mode="bilinear"))` for a 3x3 `conv` with padding 1, without
    the upsampled map: upsampling and the conv's taps are both linear, so each tap's 1x1 conv runs at
    x's resolution and one product with the fixed upsample-and-shift operator places it. Equal up to
    float rounding; for res5's 4x4 cells upsampled to 28x28, about a 30th of the conv's work."""
    n, cin, h, w = x.shape
    cout = conv.out_channels
    taps = conv.weight.reshape(cout, cin, 9).transpose(1, 2).reshape(cout * 9, cin, 1, 1)
    z = F.conv2d(x, taps).reshape(n, cout, 9 * h * w)  # channel (o, d) -> row (d, q) of the operator
    out = (z @ _upsample_taps(h, w, size, x.device, z.dtype)).reshape(n, cout, size, size)
    out = out + conv.bias.to(out.dtype).reshape(1, cout, 1, 1)
    if conv.weight.is_contiguous(memory_format=torch.channels_last):  # the model's layout on the CPU
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _conv_at(x: torch.Tensor, conv: nn.Conv2d, size: int) -> torch.Tensor:
    """The 3x3 `conv` on x at size x size: x itself, or x resized bilinearly (res5's few cells)."""
    return conv(x) if x.shape[-2:] == (size, size) else conv3x3_upsampled(x, conv, size)


class DetectionHead(nn.Module):
    """MIDN (WSDDN: Eq.11-13), K refinement classifiers with C+1 outputs, and the box regressor."""

    def __init__(self, dim: int, num_classes: int, branches: int, regressor: str, regressor_dim: int, std: float):
        super().__init__()
        self.midn_cls = _fc(dim, num_classes, std)
        self.midn_det = _fc(dim, num_classes, std)
        self.refine = nn.ModuleList(_fc(dim, num_classes + 1, std) for _ in range(branches))
        self.regressor = None
        if regressor != "none":
            out = 4 if regressor == "agnostic" else 4 * num_classes
            self.regressor = nn.Sequential(_fc(dim, regressor_dim, std), nn.ReLU(inplace=True), _fc(regressor_dim, out, std))

    def forward(self, v: torch.Tensor, frame: Optional[torch.Tensor] = None):
        """(MIDN cls logits [R,C], MIDN det logits [R,C], refinement logits [K][R,C+1], offsets [R,4|4C] or None).

        With the features of each proposal's `frame [R,D]`, the det logits are ContextLocNet's
        contrastive ones: the same layer on the box minus on its frame (model.context_frame)."""
        offsets = self.regressor(v) if self.regressor is not None else None
        det = self.midn_det(v) if frame is None else self.midn_det(v) - self.midn_det(frame)
        return self.midn_cls(v), det, [fc(v) for fc in self.refine], offsets


def midn_scores(cls_logits: torch.Tensor, det_logits: torch.Tensor) -> torch.Tensor:
    """Eq.13 for the proposals of one image: softmax over classes times softmax over proposals."""
    return F.softmax(cls_logits.float(), dim=1) * F.softmax(det_logits.float(), dim=0)


def mean_refinement_scores(refine_logits: List[torch.Tensor]) -> torch.Tensor:
    """The mean over the K refinement branches of their softmax scores, [R, C+1]: the pseudo-labels
    of IMG and the regressor in training (Sec. 3.3.2) and the detection scores at test time (Sec. 3.4)."""
    return torch.stack([F.softmax(x.float(), 1) for x in refine_logits]).mean(0)


class MaskGenerator(nn.Module):
    """IMG: per feature level a 3x3 conv, optional log(1+f) smoothing, and a 1x1 CAM classifier.

    The CAM of a level is the classifier applied at every cell (Eq.15); the proposal's class scores
    are its weighted GAP (or plain GAP), so the CAM and the scores come from the same maps. A level
    given at other than size x size cells (res5's 4x4) is resized bilinearly to it first.
    """

    def __init__(self, in_channels: List[int], dim: int, channels: int, weighted_gap: bool, log_smoothing: bool,
                 sigma: float, std: float, size: int):  # fmt: skip
        super().__init__()
        self.size = size
        self.convs = nn.ModuleList(nn.Conv2d(c, dim, 3, padding=1) for c in in_channels)
        self.classifiers = nn.ModuleList(nn.Conv2d(dim, channels, 1) for _ in in_channels)
        for conv in self.convs:
            _init(conv)
        for cls in self.classifiers:
            _init(cls, std)
        self.weighted_gap, self.log_smoothing, self.sigma = weighted_gap, log_smoothing, sigma

    def forward(self, levels: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(CAMs [L, S, K, T, T], class logits [L, S, K]) for the L feature levels of S proposals."""
        cams = []
        for x, conv, cls in zip(levels, self.convs, self.classifiers):
            f = F.relu(_conv_at(x, conv, self.size))
            cams.append(cls(torch.log1p(f) if self.log_smoothing else f).float())
        cams = torch.stack(cams)
        if self.weighted_gap:
            l, s, k, t, _ = cams.shape
            logits = ops.weighted_gap(cams.reshape(l * s, k, t, t), self.sigma).reshape(l, s, k)
        else:
            logits = cams.mean((-2, -1))
        return cams, logits


class SegmentationHead(nn.Module):
    """Four 3x3 conv + ReLU on the res5 features upsampled bilinearly to size x size, then a 1x1
    output layer per class. With `skip_channels`, a 3x3 conv of a finer level given at size x size
    (res3) is added to the first conv's output (the same as one conv over both levels stacked)."""

    def __init__(self, cin: int, dim: int, channels: int, std: float, size: int, skip_channels: int = 0):
        super().__init__()
        self.size = size
        layers = []
        for i in range(4):
            layers += [_init(nn.Conv2d(cin if i == 0 else dim, dim, 3, padding=1)), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.skip = _init(nn.Conv2d(skip_channels, dim, 3, padding=1)) if skip_channels else None
        self.out = _init(nn.Conv2d(dim, channels, 1), std)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (skip is None) != (self.skip is None):
            raise ValueError("SegmentationHead: give `skip` exactly when it was built with skip_channels")
        first = _conv_at(x, self.convs[0], self.size)  # convs[0] on the 28x28 grid
        if self.skip is not None:
            first = first + self.skip(skip.to(first.dtype))
        return self.out(self.convs[2:](F.relu(first))).float()
