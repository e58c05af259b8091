"""Whether a state dict fits a model: one check for backbone weights and for checkpoints."""
from typing import Dict, List

import torch


def mismatch(own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], shown: int = 6) -> str:
    """What differs between a model's state dict `own` and `state` (missing and extra keys, other
    shapes), each list cut at `shown`; "" when `state` fits."""
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: given {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]  # fmt: skip
    parts: List[str] = []
    for what, keys, sep in (("missing", missing, ", "), ("not in the model", extra, ", "), ("different shapes", shapes, "; ")):
        if keys:
            parts.append(f"{what}: {sep.join(keys[:shown])}" + (" ..." if len(keys) > shown else ""))
    return "; ".join(parts)
