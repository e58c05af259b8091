"""Checkpoints written atomically (a reader finds the previous file or the whole new one, never half)
and read without running code: `torch.load(weights_only=True)`, so a shared checkpoint can hold
tensors and plain values only. The RNG states are stored in those terms."""
import contextlib
import functools
import os
import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from .. import config as config_lib
from ..model import CommunityNet
from ..model.state_dict import mismatch
from .distributed import device_kind


def save(state: Dict[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# Checkpoints written before the RNG states were stored as tensors hold NumPy's state as an array:
# these globals rebuild a plain uint32 array and nothing else, so such files still load safely.
_NUMPY_ARRAY_GLOBALS = [np.empty(0).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _allowing(globals_):
    """torch's `safe_globals` context (torch >= 2.5); on torch 2.4 the allowlist is process-wide."""
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals(globals_)
    torch.serialization.add_safe_globals(globals_)
    return contextlib.nullcontext()


def load(path: Path) -> Dict[str, Any]:
    """A checkpoint's dict; a file that holds anything but tensors and plain values is refused unrun."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with _allowing(_NUMPY_ARRAY_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)|got <class '([^']+)'>", str(e))
        if named is None:  # not a pickle of objects at all
            raise ValueError(f"cannot read checkpoint {path}: {str(e).splitlines()[-1] or e}") from None
        raise ValueError(f"refusing checkpoint {path}: it holds more than tensors and plain values (it names "
                         f"{named.group(1) or named.group(2)}), and "
                         "loading it could run code; wsis checkpoints never hold such objects, so this file was "
                         "made or changed elsewhere") from None  # fmt: skip
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot read checkpoint {path}: it holds a {type(state).__name__}, not a dict of states")
    return state


def rng_state() -> Dict[str, Any]:
    """Every generator's state as tensors and plain values (what `load` accepts)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},  # fmt: skip
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    if isinstance(n, dict):
        n = (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    np.random.set_state(n)  # else the tuple of a checkpoint from before
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """`random.setstate` wants tuples; a round trip through some picklers gives lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def check_fits(model: torch.nn.Module, state: Dict[str, torch.Tensor], where: str) -> None:
    """A clear error when a checkpoint's tensors do not match the model built from the config."""
    problem = mismatch(model.state_dict(), state)
    if problem:
        raise ValueError(f"{where} does not fit the model of this config ({problem})")


def load_model(path: Path, overrides: List[str] = (), device: Optional[torch.device] = None):
    """(model, config, classes) of a checkpoint; the config is the checkpoint's own plus `overrides`."""
    state = load(path)
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a wsis checkpoint (no 'model'/'config' entries)")
    cfg = config_lib.apply_overrides(config_lib.from_saved(state["config"]), overrides).check()
    overridden = {config_lib.override_key(o) for o in overrides}
    unnamed = [k for k in config_lib.unnamed_keys(state["config"]) if k not in overridden]
    if unnamed:  # a checkpoint from before these keys existed: what it gets is today's default
        values = ", ".join(f"{k}={functools.reduce(getattr, k.split('.'), cfg)!r}" for k in unnamed)
        warnings.warn(f"{path}: its config predates {values}; today's defaults apply (set them as key=value to "
                      "change them)", stacklevel=2)  # fmt: skip
    classes = list(state["classes"])
    model = CommunityNet(cfg.model, len(classes))
    check_fits(model, state["model"], f"checkpoint {path}")
    model.load_state_dict(state["model"])
    device = device or torch.device(device_kind(cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{path}: its config says device={cfg.device}, but torch finds no CUDA device; add device=cpu")
    return model.to_device(device).eval(), cfg, classes
