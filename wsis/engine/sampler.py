"""The order of training images as a function of the iteration alone, so a resumed run reads
exactly what an uninterrupted one would have."""
from typing import Iterator, List, Tuple

import torch


class IterationBatches:
    """Batches of `(epoch, index)` keys from iteration `start` on, for one rank.

    Epoch `e` visits the images in a permutation seeded by `(seed, e)`; iteration `i` takes
    positions `i * batch .. (i + 1) * batch` of that endless stream, and rank `r` of `world` takes
    its contiguous share of them.
    """

    def __init__(self, size: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        if size == 0:
            raise ValueError("the training split has no images")
        if batch % world:
            raise ValueError(f"solver.batch_size={batch} must be a multiple of the number of processes ({world})")
        self.size, self.batch, self.seed, self.start, self.stop = size, batch, seed, start, stop
        self.rank, self.world = rank, world
        self._perm = (-1, None)

    def __len__(self) -> int:
        return self.stop - self.start

    def _order(self, epoch: int) -> torch.Tensor:
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.size, generator=g))
        return self._perm[1]

    def keys(self, iteration: int) -> List[Tuple[int, int]]:
        per = self.batch // self.world
        first = iteration * self.batch + self.rank * per
        out = []
        for pos in range(first, first + per):
            epoch, at = divmod(pos, self.size)
            out.append((epoch, int(self._order(epoch)[at])))
        return out

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        for it in range(self.start, self.stop):
            yield self.keys(it)
