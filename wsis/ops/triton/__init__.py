"""Triton kernels for box_iou, weighted_gap, cam_pseudo_masks and oicr_assign.

Registered with `torch.library.triton_op` as `torch.ops.wsis_triton.*`, so torch.compile sees
through them; chosen with `wsis.ops.set_backend("triton")`. They run on CUDA tensors, and on CPU
tensors under TRITON_INTERPRET=1 (how the tests run them on a machine without a GPU).
"""
from . import box_iou, cam, oicr  # noqa: F401  (registers the ops)
