"""Post-processing (Sec. 3.4): each mask replaced by the segment proposal that overlaps it best, or
by its detection's box filled in (the baseline masks must beat).

Where clutter or texture cut an object into pieces, no single segment holds it whole, and the best
one is a piece. With `segments`, a mask whose best segment matches it below `superpixel_iou` takes
instead the union of the finest graph regions (superpixels) it covers for at least
`superpixel_cover` of their area (docs/ABLATIONS.md: +5.6 mAP^r@0.5 on the CPU default's val set).

The segments are ranked by their IoU with the mask plus `box_weight` times the IoU of their box with
the detection's: where the model's mask is a blob at the centre of a ring, the ring's hole overlaps
it best, while the ring fits the box (docs/ABLATIONS.md).

After segments replace the masks, a part, a whole and a group box of one object often snap to the
same segment: `mask_nms` keeps the highest-scoring of each such set, as PRM does after its
retrieval of segment proposals (the paper's post-processing follows PRM's).

Segment proposals come from MCG `.mat` files (`superpixels` [H,W] plus `labels`, a cell array of
the superpixel ids of each proposal, as MCG's `im2mcg` writes them; or `masks` [H,W,N]), or, for
users without MCG, from OpenCV's graph-based segmentation at several granularities.
"""
import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..config import TestConfig
from ..data.segments import GRAPH_KS, cached_labels, covered_regions, graph_labels, region_boxes
from ..inference import Detections, fill_boxes
from .metrics import box_iou, mask_iou


def load_mcg(path: Path) -> np.ndarray:
    """Segment proposals bool [N, H, W] of one image from an MCG `.mat` file."""
    from scipy.io import loadmat

    if not Path(path).is_file():
        raise FileNotFoundError(f"MCG proposals not found: {path}")
    try:
        mat = loadmat(path)
    except Exception as e:
        raise ValueError(f"cannot read MCG proposals {path}: {e}") from None
    if "masks" in mat:
        return np.ascontiguousarray(np.moveaxis(mat["masks"].astype(bool), -1, 0))
    if "superpixels" in mat and "labels" in mat:
        sp = mat["superpixels"]
        ids = [np.asarray(cell).ravel() for cell in np.asarray(mat["labels"], dtype=object).ravel()]
        return np.stack([np.isin(sp, i) for i in ids]) if ids else np.zeros((0,) + sp.shape, bool)
    raise ValueError(f"{path}: expected 'masks' or 'superpixels' + 'labels' (MCG's format), found {sorted(k for k in mat if not k.startswith('__'))}")


def superpixel_vote(masks: torch.Tensor, superpixels: np.ndarray, cover: float) -> torch.Tensor:
    """Each mask [N, H, W] replaced by the union of the superpixels (region ids [H, W]) it covers
    for at least `cover` of their area."""
    if len(masks) == 0:
        return masks.clone()
    return torch.from_numpy(np.stack([covered_regions(m, superpixels, cover)[superpixels] for m in masks.numpy()]))


class LabelSegments:
    """The segment proposals of label maps `[H, W]` (one a granularity, ids 0..max): the regions of
    `label_regions` of each map, concatenated in order, never stored densely. An image of a few
    hundred thousand pixels has hundreds of regions a map: their IoU with a few masks comes from
    one `bincount` a mask and map, not a product over every region's pixels."""

    def __init__(self, labels: Sequence[np.ndarray]):
        self.labels = [np.asarray(x) for x in labels]
        counts = [int(x.max()) + 1 if x.size else 0 for x in self.labels]
        self.starts = np.cumsum([0] + counts)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def iou(self, masks: np.ndarray) -> np.ndarray:
        """`mask_iou(masks, regions)`, to the last bit (the same float32 arithmetic on the same counts)."""
        inter = np.zeros((len(masks), len(self)), np.float32)
        area = np.zeros(len(self), np.float32)
        for x, start, stop in zip(self.labels, self.starts[:-1], self.starts[1:]):
            ids = x.ravel()
            area[start:stop] = np.bincount(ids, minlength=stop - start)
            for i, m in enumerate(masks):
                inter[i, start:stop] = np.bincount(ids, weights=m.ravel(), minlength=stop - start)
        union = masks.reshape(len(masks), -1).sum(1, dtype=np.float32)[:, None] + area[None] - inter
        return (inter / np.maximum(union, 1)).astype(np.float64)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        """The regions at `index` (into the concatenation), bool `[len(index), H, W]`."""
        level = np.searchsorted(self.starts, index, side="right") - 1
        return np.stack([self.labels[g] == i - self.starts[g] for g, i in zip(level, index)]) if len(index) else \
            np.zeros((0,) + self.labels[0].shape, bool)


def snap(masks: torch.Tensor, segments: Union[np.ndarray, LabelSegments], superpixels: Optional[np.ndarray] = None,
         superpixel_iou: float = 0.0, superpixel_cover: float = 0.6, box_fit: Optional[np.ndarray] = None,
         box_weight: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Each mask replaced by the segment of highest IoU with it (kept as is when none overlaps); with
    `box_fit` `[N, S]` (the IoU of each mask's detection box with each segment's box), by the segment
    of highest `IoU + box_weight * box_fit` among those that overlap it. With `superpixels`, a mask
    that no segment matches at `superpixel_iou` takes its `superpixel_vote` instead (where that
    keeps any pixel)."""
    if len(masks) == 0 or len(segments) == 0:
        return masks
    iou = segments.iou(masks.numpy()) if isinstance(segments, LabelSegments) else mask_iou(masks.numpy(), segments)
    best = torch.from_numpy(iou.max(1))
    rank = iou if box_fit is None else np.where(iou > 0, iou + box_weight * box_fit, -1.0)
    idx = torch.from_numpy(rank.argmax(1))
    out = masks.clone()
    hit = best > 0
    out[hit] = torch.from_numpy(segments[idx[hit].numpy()])
    weak = best < superpixel_iou
    if superpixels is not None and weak.any():
        voted = superpixel_vote(masks[weak], superpixels, superpixel_cover)
        kept = voted.flatten(1).any(1)
        out[torch.nonzero(weak)[:, 0][kept]] = voted[kept]
    return out


def mask_nms(det: Detections, threshold: float) -> Detections:
    """Greedy per-class NMS on the masks, highest score first (ties: the earlier detection): a
    detection whose mask has an IoU above `threshold` with a kept one of its class is dropped.
    `threshold` >= 1 keeps every detection."""
    if len(det.scores) < 2 or threshold >= 1:
        return det
    order = torch.argsort(det.scores, descending=True, stable=True)
    masks = det.masks[order].numpy()
    iou = torch.from_numpy(mask_iou(masks, masks))
    same = det.classes[order][:, None] == det.classes[order][None]
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if not suppressed[i]:
            suppressed[i + 1:] |= (iou[i, i + 1:] > threshold) & same[i, i + 1:]
    keep = order[~suppressed]
    return Detections(det.boxes[keep], det.classes[keep], det.scores[keep], det.masks[keep])


def check_postprocess(spec: str) -> None:
    """A clear error for a spec that `make_postprocess` would not take."""
    if spec in ("none", "segments", "boxes"):
        return
    if spec.startswith("mcg:"):
        if not Path(spec[4:]).is_dir():
            raise FileNotFoundError(f"--postprocess mcg: folder not found: {spec[4:]}")
        return
    raise ValueError(f"--postprocess must be none, segments, boxes or mcg:DIR, got {spec!r}")


def make_postprocess(spec: str, image_path: Callable[[str], Path], superpixel_iou: float = 0.0,
                     superpixel_cover: float = 0.6, box_weight: float = 0.0,
                     segments_root: Optional[Path] = None) -> Optional[Callable[[str, Detections], torch.Tensor]]:  # fmt: skip
    """The new masks of an image's detections: `segments` (OpenCV graph segments of the images,
    found by `image_path(id)`, or read from `segments_root`'s cache where it holds the image's,
    ranked with the box prior of `box_weight`, with the `snap` of their finest regions below
    `superpixel_iou`),
    `mcg:DIR` (DIR/<id>.mat, best overlap only), `boxes` (each box filled in: the baseline the
    model's masks must beat); None for `none`."""
    check_postprocess(spec)
    if spec == "none":
        return None
    if spec == "boxes":
        return lambda image_id, det: fill_boxes(det.boxes, *det.masks.shape[-2:])
    if spec == "segments":
        from PIL import Image

        def post(image_id: str, det: Detections) -> torch.Tensor:
            labels = None
            if segments_root is not None:
                labels = cached_labels(segments_root, image_id, *det.masks.shape[-2:])
            if labels is None:
                with Image.open(image_path(image_id)) as im:
                    rgb = np.asarray(im.convert("RGB"))
                labels = [graph_labels(rgb, k) for k in GRAPH_KS]  # finest first
            segments = LabelSegments(labels)
            fit = None
            if box_weight > 0:
                fit = box_iou(det.boxes.numpy(), np.concatenate([region_boxes(x) for x in labels]))
            return snap(det.masks, segments, labels[0], superpixel_iou, superpixel_cover, fit, box_weight)

        return post
    folder = Path(spec[4:])  # mcg:DIR
    return lambda image_id, det: snap(det.masks, load_mcg(folder / f"{image_id}.mat"))


def mask_nms_threshold(method: str, test: TestConfig) -> Optional[float]:
    """`test.postprocess_nms` after segment proposals; None after filled boxes, which went through
    the box NMS already."""
    return None if method == "boxes" else test.postprocess_nms


def postprocess_detections(method: str, image_path: Callable[[str], Path], test: TestConfig,
                           segments_root: Optional[Path] = None) -> Optional[Callable[[str, Detections], Detections]]:  # fmt: skip
    """An image's detections after `method` replaced their masks (`make_postprocess` with the box
    prior and superpixels of `test`, and the segments cached under `segments_root`), then
    `mask_nms` at `mask_nms_threshold`, which drops the detections whose new mask repeats a better
    one's. None for `none`. What `wsis.evaluate` scores, and what `wsis.predict` and the run's
    pictures draw."""
    post = make_postprocess(method, image_path, test.superpixel_iou, test.superpixel_cover, test.segment_box_weight,
                            segments_root)  # fmt: skip
    if post is None:
        return None
    nms = mask_nms_threshold(method, test)

    def apply(image_id: str, det: Detections) -> Detections:
        det = dataclasses.replace(det, masks=post(image_id, det))
        return det if nms is None else mask_nms(det, nms)

    return apply
