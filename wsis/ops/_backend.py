"""The one switch between our compiled kernels ("native", the default) and the Triton kernels.

`wsis.ops.set_backend("triton")`, the `wsis.ops.backend("triton")` context manager, or the
environment variable WSIS_OPS_BACKEND=triton. Triton serves box_iou, weighted_gap,
cam_pseudo_masks and oicr_assign for CUDA tensors (and CPU tensors under TRITON_INTERPRET=1);
every other case runs the native kernels.
"""
import contextlib
import importlib
import os

import torch

BACKENDS = ("native", "triton")
_current = ["native"]


def get_backend() -> str:
    return _current[0]


def set_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "triton":
        try:
            importlib.import_module("wsis.ops.triton")  # registers torch.ops.wsis_triton.*
        except ImportError as e:
            raise ImportError(f"the triton backend needs the triton package (pip install triton): {e}") from e
    _current[0] = name


@contextlib.contextmanager
def backend(name: str):
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        _current[0] = previous


def use_triton_for(t: torch.Tensor) -> bool:
    return _current[0] == "triton" and (t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")


set_backend(os.environ.get("WSIS_OPS_BACKEND", "native"))
