"""Selective Search proposals: computed once per image, cached, filtered when loaded.

    python -m wsis.data.proposals --root DIR --split S [--mode fast|quality|single] [--scale F] [--jobs N]
                                  [--recall] [--classes C]

`--recall` then prints the share of the split's ground-truth boxes that one of the first 100, 300
and 2,000 boxes (after `filter_boxes`, as training loads them) overlaps at IoU 0.5 and 0.7.

The cache is one float32 `.npy` per image, `ROOT/proposals/selective_search_<mode>/<id>.npy`
(`selective_search_<mode>_x<scale>` for a `scale` other than 1), raw boxes `[N, 4]` (x1, y1, x2,
y2 in continuous pixels of the image as stored) in Selective Search's ranking, written atomically
(`cache.save_atomic`); a run computes only the missing files.

`scale` resizes the image (area interpolation) before Selective Search and maps the boxes back.
Its graph segmentation's `k` is a size in pixels, so on a smaller image the same `k` merges more:
on the synthetic set's 192-288-pixel images, 0.55 found more of the objects in the first 100
boxes than the full size did, in about a quarter of the time (docs/ABLATIONS.md).

OpenCV ranks the regions with `level * rand()`, the C library's generator, which is global to the
process: unseeded, the order (and so which boxes survive `max_boxes`) depends on what the process
computed before. `selective_search` reseeds it before every image, so the boxes of an image are a
function of the image, the mode and the scale alone, whichever worker computes them. A folder written before
that (it has no `ORDER_STAMP`) holds the same boxes in an order drawn when it was computed. `load_mat` reads the precomputed Selective Search `.mat`
files of Fast R-CNN / OICR / PCL.
"""
import argparse
import ctypes
import ctypes.util
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .cache import cache_root, compute_missing
from .formats import open_split

MODES = ("fast", "quality", "single")
# "single": OpenCV's one-hierarchy strategy (HSV, colour+texture+size+fill) at the fast mode's first
# graph-segmentation k. About 7x faster than "fast"; its first 100 boxes cover as many objects.
SINGLE_K = 150
MAX_SCALE = 4.0  # data.proposal_scale's bound (a typo such as 55 would run for hours: the time grows as its square)
# Written into a cache folder whose files were all computed with the seeded ranking.
ORDER_STAMP = "seeded-order"
_SEED = 1  # glibc treats srand(0) as srand(1): one seed, named once
_C_RAND_LOCK = threading.Lock()  # rand() is process-global: one seeded image at a time


def _c_srand():
    """The C library's `srand`, which OpenCV's ranking draws from; None where it cannot be found."""
    name = ctypes.util.find_library("c") if os.name != "nt" else "msvcrt"
    try:
        return ctypes.CDLL(name).srand if name else None
    except OSError:
        return None


_SRAND = _c_srand()


def check_scale(scale: float) -> None:
    if not (isinstance(scale, (int, float)) and 0 < scale <= MAX_SCALE):
        raise ValueError(f"data.proposal_scale must lie in (0, {MAX_SCALE:g}], got {scale!r}")


def cache_dir(root: Path, mode: str, scale: float = 1.0) -> Path:
    suffix = "" if scale == 1 else f"_x{scale:g}"
    return cache_root(root) / "proposals" / f"selective_search_{mode}{suffix}"


def cache_path(root: Path, image_id: str, mode: str, scale: float = 1.0) -> Path:
    """The cached boxes of one image; COCO ids are file names, folders included."""
    return cache_dir(root, mode, scale) / f"{image_id}.npy"


def selective_search(image_path: Path, mode: str = "fast", scale: float = 1.0) -> np.ndarray:
    """Selective Search boxes of one image, float32 [N, 4] (x1, y1, x2, y2) in the pixels of the image
    as stored, best ranked first; computed on the image resized by `scale`."""
    import cv2  # opencv-contrib: ximgproc

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_scale(scale)
    image = cv2.imread(str(image_path))
    if image is None:
        raise ValueError(f"cannot read image {image_path}")
    height, width = image.shape[:2]
    if scale != 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(image)
    if mode == "fast":
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality()
    else:
        ss.switchToSingleStrategy(SINGLE_K)
    with _C_RAND_LOCK:
        if _SRAND is None:
            warnings.warn("cannot seed the C library's rand(): Selective Search's box order will vary from run to run")
        else:
            _SRAND(_SEED)
        rects = ss.process().astype(np.float32).reshape(-1, 4)  # x, y, w, h
    rects[:, 2:] += rects[:, :2]
    if scale != 1:  # back to the stored image's pixels, each axis by its own rounded ratio
        rects *= np.array([width / image.shape[1], height / image.shape[0]] * 2, dtype=np.float32)
    return rects


def _selective_search_one_thread(image_path: Path, mode: str, scale: float) -> np.ndarray:
    import cv2

    cv2.setNumThreads(1)  # the pool gives the parallelism
    return selective_search(image_path, mode, scale)


def compute(root: Path, split: str, mode: str = "fast", jobs: Optional[int] = None, progress: bool = True,
            scale: float = 1.0) -> Path:  # fmt: skip
    """Compute the proposals of every image of `split` that has none cached yet; returns the cache folder."""
    check_scale(scale)
    data = open_split(root, split)
    folder = cache_dir(root, mode, scale)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / ORDER_STAMP
    if not stamp.is_file():
        if any(folder.rglob("*.npy")):
            warnings.warn(f"{folder} was computed before wsis seeded Selective Search: its boxes are in an order "
                          "drawn when each file was written, so runs over it repeat each other but not runs over a "
                          "fresh cache; delete the folder to recompute it in the seeded order", stacklevel=2)  # fmt: skip
        else:
            stamp.touch()  # an empty folder: every file it will hold is computed in the seeded order
    images = [((data.image_path(i), mode, scale), cache_path(root, i, mode, scale)) for i in data.image_ids]
    compute_missing(_selective_search_one_thread, images, f"proposals {split}", jobs, progress)
    return folder


def load(root: Path, image_id: str, mode: str = "fast", scale: float = 1.0) -> np.ndarray:
    path = cache_path(root, image_id, mode, scale)
    if not path.is_file():
        raise FileNotFoundError(f"no proposals for {image_id}: {path} (run python -m wsis.data.proposals first)")
    return np.load(path)


def filter_boxes(boxes: np.ndarray, height: int, width: int, min_size: float = 8, max_boxes: int = 2000) -> np.ndarray:
    """Clip to the image, drop boxes under `min_size` pixels a side and duplicates (keeping the
    first), keep the first `max_boxes` in the given order."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)][:max_boxes]


RECALL_TOPS = (100, 300, 2000)
RECALL_IOUS = (0.5, 0.7)


def recall(root: Path, split: str, mode: str = "fast", scale: float = 1.0, min_box: float = 8, classes: str = "",
           tops: Sequence[int] = RECALL_TOPS, ious: Sequence[float] = RECALL_IOUS) -> Dict[str, float]:  # fmt: skip
    """`{"R@<top>/<iou>": %}`: the share of the split's boxes (ignored ones left out) that one of the
    first `top` cached proposals overlaps at IoU >= `iou`; `"boxes"`: how many there are."""
    from ..ops import box_iou  # ours: the lean CPU-only install has no torchvision

    data = open_split(root, split, classes=classes)
    best = {top: [] for top in tops}  # each ground-truth box's best IoU within the first `top` proposals
    for image_id in data.image_ids:
        _, gt, ignore = data.objects(image_id)
        gt = gt[~ignore]
        if not len(gt):
            continue
        height, width = data.image_size(image_id)
        boxes = torch.from_numpy(filter_boxes(load(root, image_id, mode, scale), height, width, min_box, max(tops)))
        iou = box_iou(gt.float(), boxes.float())
        for top in tops:
            best[top].append(iou[:, :top].amax(1) if iou.shape[1] else torch.zeros(len(gt)))
    out = {"boxes": float(sum(len(b) for b in best[tops[0]]))}
    for top in tops:
        hits = torch.cat(best[top]) if best[top] else torch.zeros(0)
        for t in ious:
            out[f"R@{top}/{t:g}"] = 100.0 * float((hits >= t).float().mean()) if len(hits) else float("nan")
    return out


def load_mat(path: Path, image_ids: Sequence[str]) -> Dict[str, np.ndarray]:
    """Boxes of a Fast R-CNN / OICR / PCL Selective Search `.mat` (`boxes`: one `[k, 4]` array an
    image in 1-based inclusive (y1, x1, y2, x2); `images`: the image names), converted to
    continuous (x1, y1, x2, y2). The file's image list must equal `image_ids`."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable .mat file: {e}") from e
    if "boxes" not in mat or "images" not in mat:
        raise ValueError(f"{path}: expected the variables 'boxes' and 'images', found {sorted(k for k in mat if not k.startswith('__'))}")
    names = [str(np.asarray(n).squeeze()) for n in np.asarray(mat["images"]).ravel()]
    if names != list(image_ids):
        extra, missing = sorted(set(names) - set(image_ids)), sorted(set(image_ids) - set(names))
        raise ValueError(
            f"{path}: its {len(names)} images do not match the {len(image_ids)} of the split "
            f"(not in the split: {extra[:5]}, missing: {missing[:5]}, or another order)"
        )
    out = {}
    for name, raw in zip(names, np.asarray(mat["boxes"]).ravel()):
        b = np.asarray(raw, dtype=np.float32).reshape(-1, 4)
        out[name] = np.stack([b[:, 1] - 1, b[:, 0] - 1, b[:, 3], b[:, 2]], axis=1)
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.data.proposals", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="the data set: a VOC tree, a YOLO root or COCO's image folder")
    parser.add_argument("--split", required=True, help="a split of it, e.g. train (VOC's list, a YOLO split, a COCO .json)")
    parser.add_argument("--mode", choices=MODES, default="fast", help="Selective Search mode (default: fast)")
    from ..config import DataConfig  # here: the config imports this module

    default_scale = DataConfig().proposal_scale
    parser.add_argument("--scale", type=float, default=default_scale,
                        help=f"resize the images by this before Selective Search (data.proposal_scale; default: "
                             f"{default_scale:g}, the CPU default's; the VOC 2012 config's is 1)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--recall", action="store_true",
                        help="then print the recall of the ground-truth boxes within the first 100, 300 and 2000 boxes")
    parser.add_argument("--classes", default="", help="with a YOLO root: data.classes (e.g. voc)")
    args = parser.parse_args(argv)
    try:
        todo = sum(not cache_path(args.root, i, args.mode, args.scale).is_file()
                   for i in open_split(args.root, args.split).image_ids)  # fmt: skip
        start = time.perf_counter()
        folder = compute(args.root, args.split, args.mode, args.jobs, scale=args.scale)
        if todo:
            jobs = args.jobs or os.cpu_count() or 1
            print(f"{todo} images in {time.perf_counter() - start:.1f} s with {jobs} processes: "
                  f"{(time.perf_counter() - start) * min(jobs, todo) / todo:.2f} s an image on one core")
        if args.recall:
            r = recall(args.root, args.split, args.mode, args.scale, classes=args.classes)
            print(f"recall of {r.pop('boxes'):.0f} ground-truth boxes: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items()))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"proposals in {folder}")


if __name__ == "__main__":
    main()
