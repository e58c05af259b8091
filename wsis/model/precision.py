"""The precision of the frame pass (`model.frame_dtype`): bfloat16 on CPUs that compute it natively.

The frame pass (ContextLocNet's frame features, `CommunityNet._frame_features`) is a forward pass of
the head without gradient. Under bfloat16 autocast its convolutions ran twice as fast on an AVX512-BF16
CPU (0.056 s against 0.111 s a step of the CPU default, 2 threads), with features within 1.5% of the
float32 ones; CPUs without the instructions would emulate it, unmeasured, so `auto` keeps float32 there.
"""
import functools
from pathlib import Path
from typing import Optional

import torch

_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def cpuinfo_field(name: str, cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The first CPU's `name` field in Linux's `cpuinfo` (`flags`, `model name`); None where there is none."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 dot-product instructions (x86's AVX512-BF16 or AMX-BF16), read from
    Linux's `cpuinfo`; False where it cannot be read."""
    return bool(_NATIVE_BF16_FLAGS & set((cpuinfo_field("flags", cpuinfo) or "").split()))


def frame_in_bf16(setting: str, device: torch.device) -> bool:
    """Whether the frame pass runs under bfloat16 autocast on `device` for `model.frame_dtype=setting`."""
    if setting == "bfloat16":
        return True
    return setting == "auto" and device.type == "cpu" and cpu_has_native_bf16()
