"""Make sure a run's data exist: the synthetic set when no root is given, and cached proposals."""
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence, Union

from ..config import DataConfig
from . import proposals, synthetic
from .formats import open_split


def synthetic_root(cfg: DataConfig) -> Path:
    """Where the synthetic set of `cfg.synthetic` lives: other knobs, another folder."""
    if cfg.synthetic_dir:
        return Path(cfg.synthetic_dir)
    digest = hashlib.sha1(json.dumps(asdict(cfg.synthetic), sort_keys=True).encode()).hexdigest()[:8]
    return Path("data") / f"synthetic-{digest}"


def prepare(cfg: DataConfig, splits: Union[Sequence[str], Mapping[str, str]], progress: bool = True) -> Path:
    """The data set root, after generating the synthetic set (if asked) and any missing proposals.

    `splits` maps the config keys that name them (`data.train_split`, `test.corloc_split`) to the
    splits, or lists them: each is opened first, so that a split the root lacks stops the run,
    with the key and the split's name, before any proposal is computed or any iteration runs."""
    if cfg.root:
        root = Path(cfg.root)
        if not root.is_dir():
            raise FileNotFoundError(f"data.root: data set folder not found: {root}")
    else:
        root = synthetic.generate(synthetic_root(cfg), cfg.synthetic, progress=progress)
    named = dict(splits) if isinstance(splits, Mapping) else {f"split {s!r}": s for s in splits}
    for key, split in named.items():
        try:
            open_split(root, split, classes=cfg.classes)
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"{key}={split}: not a split of {root}: {e}") from None
    for split in dict.fromkeys(named.values()):
        proposals.compute(root, split, cfg.proposal_mode, progress=progress, scale=cfg.proposal_scale)
    return root
