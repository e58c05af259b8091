"""ResNet with GroupNorm (the paper replaces BatchNorm by GroupNorm for its batch of 2 images).

Module names follow torchvision's ResNet (`conv1`, `bn1`, `layer1`..`layer4`, `downsample.0/1`),
which timm's GroupNorm ResNets share, so an ImageNet state dict in either format loads by name.
res2..res5 are `layer1`..`layer4`; the detector runs `layer4` (res5) per proposal on the 7x7
pooled res4 features.
"""
from pathlib import Path
from typing import Dict, Tuple

import torch
from torch import nn

_LAYOUT = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
           101: ("bottleneck", (3, 4, 23, 3))}  # fmt: skip


def group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in Wu & He (2018) where the channels allow; at least 4 channels a group below.
    return nn.GroupNorm(32 if channels >= 128 else max(1, channels // 4), channels)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = group_norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = group_norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, width, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = group_norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3 (ResNet v1.5)
        self.bn2 = group_norm(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = group_norm(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, width * 4, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _shortcut(cin: int, cout: int, stride: int):
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), group_norm(cout))


class ResNetGN(nn.Module):
    """The trunk (stem, res2..res4) on the image and res5 as a per-proposal head."""

    def __init__(self, depth: int = 50, width: int = 64, res5_stride: int = 2, freeze_at: int = 2):
        super().__init__()
        kind, counts = _LAYOUT[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = group_norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, layers = width, []
        for i, (n, stride) in enumerate(zip(counts, (1, 2, 2, res5_stride))):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width * 2**i, stride if j == 0 else 1))
                cin = width * 2**i * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        e = block.expansion
        self.channels = {"res3": width * 2 * e, "res4": width * 4 * e, "res5": width * 8 * e}
        self.strides = {"res3": 8, "res4": 16}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # each residual branch starts as identity (Goyal et al. 2017)
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        stages = [(self.conv1, self.bn1), (self.layer1,)][:freeze_at]
        for stage in stages:
            for module in stage:
                for p in module.parameters():
                    p.requires_grad_(False)

    def trunk(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(res3, res4) feature maps of a batch of images."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        res3 = self.layer2(self.layer1(x))
        return res3, self.layer3(res3)

    def res5(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layer4(pooled)


def load_pretrained(backbone: ResNetGN, path: str) -> Dict[str, list]:
    """Load an ImageNet state dict (torchvision or timm names) into the backbone, by name.

    Keys the backbone does not have (the classifier `fc.*`, BatchNorm running statistics) are
    skipped and reported; a file whose tensors mostly do not fit is an error, not a silent no-op.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model.backbone.weights: file not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle or zip error says little; name the file
        raise ValueError(f"model.backbone.weights: cannot read {file} as a torch state dict: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = backbone.state_dict()
    loaded, mismatched = {}, []
    for k, v in state.items():
        if k in own and own[k].shape == v.shape:
            loaded[k] = v
        elif k in own:
            mismatched.append(f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}")
    if mismatched:
        raise ValueError(f"model.backbone.weights: {file} does not fit the backbone (depth/width?): "
                         + "; ".join(mismatched[:5]))  # fmt: skip
    if len(loaded) < len(own) // 2:
        raise ValueError(f"model.backbone.weights: only {len(loaded)} of the backbone's {len(own)} tensors are in {file}; "
                         "is it a ResNet state dict with torchvision or timm names?")  # fmt: skip
    backbone.load_state_dict(loaded, strict=False)
    return {"missing": sorted(set(own) - set(loaded)), "skipped": sorted(set(state) - set(loaded))}
