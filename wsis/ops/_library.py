"""Loads the compiled kernels once; every op module imports `ops` from here."""
import torch

try:
    from wsis import _C  # noqa: F401  (registers torch.ops.wsis.*)
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "wsis._C, the compiled kernels, could not be imported. Build them with "
        "`pip install --no-build-isolation -e .` against the torch you run (see README.md). "
        f"Cause: {e}"
    ) from e

ops = torch.ops.wsis
