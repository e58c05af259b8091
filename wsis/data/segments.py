"""Graph segments of an image (OpenCV's Felzenszwalb-Huttenlocher): the segment proposals of
`--postprocess segments` and of the pseudo-mask snapping in training (`model.snap_pseudo_masks`).

Training reads them from a cache computed once per image at its own size, like the proposals:
`ROOT/segments/graph/<id>.npz`, the `segment_ids` of the image (uint16 `[len(GRAPH_KS), H, W]`).
"""
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .cache import cache_root, compute_missing
from .formats import open_split

GRAPH_KS = (100, 300, 1000)  # the granularities of the graph segments, finest first


def graph_labels(image: np.ndarray, k: float, sigma: float = 0.8, min_size: int = 50) -> np.ndarray:
    """Region ids int32 [H, W] of Felzenszwalb-Huttenlocher graph segmentation (OpenCV ximgproc) of
    an RGB uint8 image at granularity `k`."""
    import cv2

    return cv2.ximgproc.segmentation.createGraphSegmentation(sigma, float(k), min_size).processImage(image[..., ::-1])


def label_regions(labels: np.ndarray) -> np.ndarray:
    """The regions bool [N, H, W] of a label map [H, W] with ids 0..N-1 (those of `graph_labels`:
    the segment proposals of one granularity)."""
    return labels[None] == np.arange(int(labels.max()) + 1)[:, None, None]


def covered_regions(mask: np.ndarray, labels: np.ndarray, cover: float) -> np.ndarray:
    """For each id 0..max of a label map (non-negative ints, the shape of the bool `mask`), whether
    `mask` covers at least `cover` of its pixels (False for ids the map lacks): the superpixels a
    mask takes in the snapping of training and of the post-processing."""
    ids = labels.ravel()
    area = np.bincount(ids)
    inside = np.bincount(ids, weights=mask.ravel(), minlength=len(area))
    return inside / np.maximum(area, 1) >= cover


def region_boxes(labels: np.ndarray) -> np.ndarray:
    """The box (x1, y1, x2, y2, pixel edges) of every id 0..max of a label map (non-negative ints
    `[H, W]`, or `[G, H, W]` whose granularities share no id), float32 `[max + 1, 4]`; zeros for an
    id the map lacks. It serves the box prior of the snapping in training and post-processing."""
    from scipy import ndimage

    labels = np.asarray(labels)
    h = labels.shape[-2]
    stacked = labels.reshape(-1, labels.shape[-1]).astype(np.int64) + 1  # ndimage counts ids from 1
    boxes = np.zeros((int(stacked.max()), 4), np.float32)
    for i, found in enumerate(ndimage.find_objects(stacked)):
        if found is not None:
            ys, xs = found
            boxes[i] = (xs.start, ys.start % h, xs.stop, (ys.stop - 1) % h + 1)
    return boxes


def segment_ids(image: np.ndarray, ks: Sequence[float] = GRAPH_KS) -> np.ndarray:
    """The `graph_labels` of an RGB uint8 image at each granularity, uint16 `[len(ks), H, W]`, with ids
    unique across granularities (cells that share an id lie in one segment)."""
    maps, offset = [], 0
    for k in ks:
        labels = graph_labels(np.ascontiguousarray(image), k)
        maps.append(labels + offset)
        offset += int(labels.max()) + 1
    if offset > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"{offset} graph segments in an image of {image.shape[1]}x{image.shape[0]}: more than uint16 holds")
    return np.stack(maps).astype(np.uint16)


def cache_path(root: Path, image_id: str) -> Path:
    return cache_root(root) / "segments" / "graph" / f"{image_id}.npz"


def _segment_ids_one_thread(image_path: Path) -> np.ndarray:
    import cv2
    from PIL import Image

    cv2.setNumThreads(1)  # the pool gives the parallelism
    with Image.open(image_path) as im:
        return segment_ids(np.asarray(im.convert("RGB")))


def compute(root: Path, split: str, jobs: Optional[int] = None, progress: bool = True) -> None:
    """Cache the segment ids of every image of `split` that has none yet."""
    data = open_split(root, split)
    images = [((data.image_path(i),), cache_path(root, i)) for i in data.image_ids]
    compute_missing(_segment_ids_one_thread, images, f"segments {split}", jobs, progress)


def cached_labels(root: Path, image_id: str, height: int, width: int) -> Optional[List[np.ndarray]]:
    """The `graph_labels` of each granularity, finest first, from an image's cache; None where it has
    none, or one of another size than `height x width` (made for another image)."""
    if not cache_path(root, image_id).is_file():
        return None
    ids = load(root, image_id)
    if ids.shape != (len(GRAPH_KS), height, width):
        return None
    # segment_ids offset each map by the count before it; every map holds its label 0
    return [m.astype(np.int32) - int(m.min()) for m in ids]


def load(root: Path, image_id: str) -> np.ndarray:
    path = cache_path(root, image_id)
    if not path.is_file():
        raise FileNotFoundError(f"no graph segments for {image_id}: {path} (training computes them first)")
    with np.load(path) as f:
        return f["array"]
