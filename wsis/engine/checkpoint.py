"""Checkpoints written atomically: a reader finds the previous file or the whole new one, never half."""
import os
import random
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch


def save(state: Dict[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path}: {e}") from None


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_fits(model: torch.nn.Module, state: Dict[str, torch.Tensor], where: str) -> None:
    """A clear error when a checkpoint's tensors do not match the model built from the config."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]  # fmt: skip
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
        if extra:
            parts.append(f"not in the model: {', '.join(extra[:6])}" + (" ..." if len(extra) > 6 else ""))
        if shapes:
            parts.append("different shapes: " + "; ".join(shapes[:6]))
        raise ValueError(f"{where} does not fit the model of this config ({'; '.join(parts)})")
