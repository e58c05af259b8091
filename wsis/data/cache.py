"""Per-image arrays computed once and cached as files (proposals, graph segments).

Each file is written to a temporary name and renamed, so an interrupted run leaves no partial file
and the next run computes only what is missing. The caches live under the data set's root, or, where
that folder is read-only (a shared data set), under `$WSIS_CACHE` (default `~/.cache/wsis`), in a
folder named after the root's name and a digest of its absolute path.
"""
import hashlib
import os
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple

import numpy as np

from ..progress import Progress


def cache_root(root: Path) -> Path:
    """Where the caches of the data set at `root` live: `root` itself, unless it is read-only."""
    root = Path(root)
    # the mode bits too: the superuser may write into a folder that denies it to everyone
    if not root.exists() or (root.stat().st_mode & 0o222 and os.access(root, os.W_OK)):
        return root
    where = root.resolve()
    base = Path(os.environ.get("WSIS_CACHE") or Path.home() / ".cache" / "wsis")
    return base / f"{where.name}-{hashlib.sha1(str(where).encode()).hexdigest()[:8]}"


def save_atomic(path: Path, array: np.ndarray) -> None:
    """`array` as `path`: `.npy`, or zip-compressed `.npz` (one entry, `array`)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, array=array) if path.suffix == ".npz" else np.save(f, array)
    os.replace(tmp, path)  # a reader sees the old file or the whole new one


def pool_imap(work: Callable, jobs: Sequence, processes: Optional[int] = None, initializer: Optional[Callable] = None,
              chunksize: int = 1) -> Iterator:  # fmt: skip
    """`work(job)` for each of `jobs`, in a spawned pool of `processes` (default: one per CPU), as they
    finish; `work` and `initializer` must be module-level functions (they are pickled)."""
    with get_context("spawn").Pool(processes or os.cpu_count() or 1, initializer) as pool:
        yield from pool.imap_unordered(work, jobs, chunksize)


def _compute_one(job):
    work, args, out = job
    array = work(*args)
    save_atomic(out, array)
    return len(array)


def compute_missing(work: Callable[..., np.ndarray], jobs: Sequence[Tuple[tuple, Path]], what: str,
                    processes: Optional[int] = None, progress: bool = True) -> None:  # fmt: skip
    """`work(*args)` saved to `out` for every `(args, out)` of `jobs` whose file is missing, in a pool
    of `processes` (default: one per CPU); `work` must be a module-level function (it is pickled)."""
    todo = [(work, args, out) for args, out in jobs if not out.is_file()]
    if not todo:
        return
    for parent in {out.parent for _, _, out in todo}:
        parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(todo), what, "img", enabled=progress)
    for done, _ in enumerate(pool_imap(_compute_one, todo, processes), 1):
        bar.update(done)
