"""Argument checks of the Python API: metadata only (no device sync), errors that name the argument."""
from typing import Optional, Sequence

import torch


def tensor(t, name: str, dims: Sequence[int], last: Optional[int] = None, floating: bool = True) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if last is not None and t.shape[-1] != last:
        raise ValueError(f"{name} must have {last} values in its last dim, got shape {tuple(t.shape)}")
    if floating and not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")


def same_device(*named) -> None:
    (first_name, first), *rest = named
    for name, t in rest:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")


def same_dtype(*named) -> None:
    (first_name, first), *rest = named
    for name, t in rest:
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}")


def length(t: torch.Tensor, name: str, n: int, of: str) -> None:
    if t.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per {of}), got shape {tuple(t.shape)}")


def positive(value, name: str) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
