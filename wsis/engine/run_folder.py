"""The paths of a run folder, named once (docs/USAGE.md, The run folder)."""
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    def checkpoint(self, iteration: int) -> Path:
        return self.checkpoints / f"model_{iteration:07d}.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def pictures(self) -> Path:
        return self.root / "pictures"

    @property
    def curves(self) -> Path:
        return self.pictures / "curves.png"
