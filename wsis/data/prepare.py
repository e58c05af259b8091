"""Make sure a run's data exist: the synthetic set when no root is given, and cached proposals."""
from pathlib import Path
from typing import Sequence

from ..config import DataConfig
from . import proposals, synthetic


def prepare(cfg: DataConfig, splits: Sequence[str], progress: bool = True) -> Path:
    """The data set root, after generating the synthetic set (if asked) and any missing proposals."""
    if cfg.root:
        root = Path(cfg.root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: data set folder not found: {root}")
    else:
        root = synthetic.generate(Path(cfg.synthetic_dir), synthetic.Settings(), progress=progress)
    for split in splits:
        proposals.compute(root, split, cfg.proposal_mode, progress=progress)
    return root
