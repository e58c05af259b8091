"""glibc malloc settings for work that frees and reallocates the same large tensors every step.

glibc gives a freed block above its mmap threshold (dynamic, 128 KiB to 32 MiB), and the free top of
its heap above its trim threshold (twice the other), back to the OS. The next step's tensors of the
same sizes then arrive as fresh pages, one page fault each 4 KiB, zeroed by the kernel. In the CPU
default's training (`python -m wsis.train`, 80 iterations on cached data) that was 6.5M minor faults
and 15.5 s of system time against 0.87M and 3.5 s with freed memory kept, and 0.733 s a step
against 0.667 (benchmarks/RESULTS.md). PyTorch's CPU tuning guide suggests jemalloc or
tcmalloc for the same reason; these two `mallopt` calls get that without a preload.

A process-wide setting, applied once by `wsis.train`, and only there: `python -m wsis.evaluate` on
the default's checkpoint took 80.5 s either way (1.4M against 1.6M faults). Allocator settings the
user made (glibc's MALLOC_* variables or tunables, or a preloaded allocator) are left as they are.
"""
import ctypes
import os
from typing import Optional

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # the most glibc accepts (half its 64 MiB arena heaps); larger blocks stay mmapped
TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int: keep up to 2 GiB of free heap top
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

_state: Optional[str] = None  # what keep_freed_memory found or did, for env.json


def _glibc() -> Optional[str]:
    try:
        name = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; absent off glibc
    except (AttributeError, ValueError, OSError):
        return None
    return name if name and name.startswith("glibc") else None


def _users_own() -> Optional[str]:
    for key in _USER_SETTINGS:
        if key in os.environ:
            return key
    if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):  # jemalloc, tcmalloc, mimalloc
        return "LD_PRELOAD"
    return None


def keep_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds (once a process); returns what was done, as `state()`."""
    global _state
    if _state is not None:
        return _state
    glibc, users = _glibc(), _users_own()
    if glibc is None:
        _state = "unchanged (not glibc)"
    elif users is not None:
        _state = f"unchanged (the user's {users})"
    else:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        _state = (f"{glibc}: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
                  if done else f"unchanged ({glibc} refused mallopt)")  # fmt: skip
    return _state


def state() -> str:
    """What `keep_freed_memory` did in this process, or that it was not called."""
    return _state or "process defaults (keep_freed_memory not called)"
