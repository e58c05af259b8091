"""Make sure a run's data exist: the synthetic set when no root is given, and cached proposals."""
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from ..config import DataConfig
from . import proposals, synthetic


def synthetic_root(cfg: DataConfig) -> Path:
    """Where the synthetic set of `cfg.synthetic` lives: other knobs, another folder."""
    if cfg.synthetic_dir:
        return Path(cfg.synthetic_dir)
    digest = hashlib.sha1(json.dumps(asdict(cfg.synthetic), sort_keys=True).encode()).hexdigest()[:8]
    return Path("data") / f"synthetic-{digest}"


def prepare(cfg: DataConfig, splits: Sequence[str], progress: bool = True) -> Path:
    """The data set root, after generating the synthetic set (if asked) and any missing proposals."""
    if cfg.root:
        root = Path(cfg.root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: data set folder not found: {root}")
    else:
        root = synthetic.generate(synthetic_root(cfg), cfg.synthetic, progress=progress)
    for split in splits:
        proposals.compute(root, split, cfg.proposal_mode, progress=progress, scale=cfg.proposal_scale)
    return root
