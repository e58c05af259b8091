"""roi_pool: the SPP layer (7x7 for the detector, 28x28 for the IMG module)."""
from typing import List, Sequence, Tuple, Union

import torch
from torch import nn

from . import _checks
from ._library import ops

Size = Union[int, Sequence[int]]


def _pair(size: Size, name: str) -> Tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {size}")
    return int(h), int(w)


def rois_from_boxes(boxes: List[torch.Tensor]) -> torch.Tensor:
    """A list of per-image `[L_i,4]` boxes to `[K,5]` rois (`batch_index, x1, y1, x2, y2`)."""
    for i, b in enumerate(boxes):
        _checks.tensor(b, f"boxes[{i}]", (2,), last=4)
    if not boxes:
        raise ValueError("boxes is an empty list; pass a [K,5] tensor for no rois")
    cat = torch.cat(boxes)
    idx = torch.cat([torch.full((len(b), 1), i, dtype=cat.dtype, device=cat.device) for i, b in enumerate(boxes)])
    return torch.cat([idx, cat], dim=1)


def roi_pool(
    input: torch.Tensor,
    boxes: Union[torch.Tensor, List[torch.Tensor]],
    output_size: Size,
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Max-pool each roi of `input [B,C,H,W]` into `output_size`; `[K,C,h,w]`.

    Same forward and gradient as `torchvision.ops.roi_pool`. `boxes` is a `[K,5]` tensor of
    `batch_index, x1, y1, x2, y2` rows or a list of per-image `[L,4]` boxes.
    """
    _checks.tensor(input, "input", (4,))
    rois = rois_from_boxes(boxes) if isinstance(boxes, (list, tuple)) else boxes
    _checks.tensor(rois, "boxes", (2,), last=5)
    _checks.same_device(("input", input), ("boxes", rois))
    _checks.same_dtype(("input", input), ("boxes", rois))
    _checks.positive(spatial_scale, "spatial_scale")
    h, w = _pair(output_size, "output_size")
    out, _ = ops.roi_pool(input, rois, float(spatial_scale), h, w)
    return out


class RoIPool(nn.Module):
    """Module form of `roi_pool`, as `torchvision.ops.RoIPool`."""

    def __init__(self, output_size: Size, spatial_scale: float):
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = float(spatial_scale)

    def forward(self, input: torch.Tensor, rois) -> torch.Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


@torch.library.register_fake("wsis::roi_pool")
def _(input, rois, spatial_scale, pooled_height, pooled_width):
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int32)


@torch.library.register_fake("wsis::_roi_pool_backward")
def _(grad, rois, argmax, batch_size, channels, height, width):
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output):
    input, rois, *_ = inputs
    ctx.save_for_backward(rois, output[1])
    ctx.input_shape = tuple(input.shape)


def backward_by_index(grad: torch.Tensor, rois: torch.Tensor, argmax: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """roi_pool's input gradient by `index_put_(accumulate=True)`, which torch makes deterministic
    under `torch.use_deterministic_algorithms`; the CUDA kernel's atomics sum in any order."""
    b, c, h, w = shape
    planes = rois[:, 0].long()[:, None] * c + torch.arange(c, device=grad.device)  # [K, C] rows of [B*C, H*W]
    where = argmax.flatten(2).long()
    valid = where >= 0  # an empty bin takes no gradient
    index = (planes[:, :, None] * (h * w) + where)[valid]
    out = grad.new_zeros(b * c * h * w)
    out.index_put_((index,), grad.flatten(2)[valid], accumulate=True)
    return out.view(b, c, h, w)


def _backward(ctx, grad_out, _grad_argmax):
    rois, argmax = ctx.saved_tensors
    if grad_out.device.type != "cpu" and torch.are_deterministic_algorithms_enabled():
        grad_input = backward_by_index(grad_out, rois, argmax, ctx.input_shape)
    else:  # the CPU kernel runs channels in parallel and adds in a fixed order
        grad_input = ops._roi_pool_backward(grad_out, rois, argmax, *ctx.input_shape)
    return grad_input, None, None, None, None


torch.library.register_autograd("wsis::roi_pool", _backward, setup_context=_setup_context)
