"""Inference (Sec. 3.4): detections by the mean refinement score, masks by Eq.10, the test-time ensemble.

Every view (scale x flip) of an image scores the same proposals; the ensemble averages their
scores and regressed boxes (mapped back to the original pixels), keeps per proposal its argmax
class, and runs per-class NMS once. The masks of the surviving boxes are computed in every view,
their 28x28 maps (`test.masks`: Eq.10's `(M^c + S^c) / 2`, or `S^c` alone) averaged (flipped
views mirrored back), pasted into the box at image resolution and thresholded at
`test.mask_threshold`.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from . import ops
from .config import Config, TestConfig
from .data.loader import InferenceDataset, Sample, flip_boxes
from .model import CommunityNet
from .progress import Progress

# `--tta`: the paper's test-time ensemble, every scale of data.scales with the flip.
TTA_OVERRIDES = ("test.scales=[]", "test.flip=true")


@dataclass
class Detections:
    boxes: torch.Tensor  # float32 [D, 4] in original image pixels
    classes: torch.Tensor  # int64 [D], 1-based
    scores: torch.Tensor  # float32 [D]
    masks: torch.Tensor  # bool [D, H, W]


def to_view(boxes: torch.Tensor, sample: Sample, width: int) -> torch.Tensor:
    """Boxes in original pixels to the pixels of a view (resized by `scale`, maybe flipped; `width` its width)."""
    b = boxes * sample.scale
    return flip_boxes(b, width) if sample.flipped else b


def from_view(boxes: torch.Tensor, sample: Sample, width: int) -> torch.Tensor:
    """The inverse of `to_view`."""
    return (flip_boxes(boxes, width) if sample.flipped else boxes) / sample.scale


def paste_masks(maps: torch.Tensor, boxes: torch.Tensor, height: int, width: int, threshold: float) -> torch.Tensor:
    """Each `T x T` map resampled (bilinear) onto the pixels whose centres lie in its box, then `> threshold`.

    Pixels outside the box are False. Returns bool [D, height, width].
    """
    out = torch.zeros(len(maps), height, width, dtype=torch.bool)
    for i, (m, b) in enumerate(zip(maps.float().cpu(), boxes.float().cpu())):
        x1, y1, x2, y2 = b.tolist()
        if x2 <= x1 or y2 <= y1:
            continue
        # pixel j (centre j + 0.5) lies in the box when x1 <= j + 0.5 < x2
        c0, c1 = max(0, math.ceil(x1 - 0.5)), min(width, math.ceil(x2 - 0.5))
        r0, r1 = max(0, math.ceil(y1 - 0.5)), min(height, math.ceil(y2 - 0.5))
        if c1 <= c0 or r1 <= r0:
            continue
        gx = (torch.arange(c0, c1) + 0.5 - x1) / (x2 - x1) * 2 - 1
        gy = (torch.arange(r0, r1) + 0.5 - y1) / (y2 - y1) * 2 - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
        v = F.grid_sample(m[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0]
        out[i, r0:r1, c0:c1] = v > threshold
    return out


def fill_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Each box filled in as a mask, bool [D, height, width]: the simplest mask a model's must beat."""
    return paste_masks(torch.ones(len(boxes), 1, 1), boxes, height, width, 0.5)


class Predictor:
    def __init__(self, model: CommunityNet, cfg: TestConfig, device: torch.device):
        self.model, self.cfg, self.device = model.eval(), cfg, device

    def _features(self, s: Sample):
        res3, res4 = self.model.features(s.image[None].to(self.device))
        return res3, res4, s.image.shape[-1]

    @torch.no_grad()
    def _views(self, views: List[Sample]):
        feats, scores, boxes = [], [], []
        for s in views:
            res3, res4, width = self._features(s)
            sc, bx = self.model.detect(res4, ops.rois_from_boxes([s.boxes.to(self.device)]))
            feats.append((res3, res4, width))
            scores.append(sc.float().cpu())
            boxes.append(from_view(bx.float().cpu(), s, width))
        return feats, torch.stack(scores).mean(0), torch.stack(boxes).mean(0)

    @torch.no_grad()
    def masks_of(self, views: List[Sample], boxes: torch.Tensor, classes: torch.Tensor, size: Tuple[int, int]):
        """The masks the model gives given boxes (original pixels) of given 1-based classes: the mask
        path alone, as on the detector's boxes (`--oracle-boxes` feeds it the ground truth)."""
        return self._masks(views, [self._features(s) for s in views], boxes, classes, *size)

    @torch.no_grad()
    def __call__(self, views: List[Sample], size: Tuple[int, int]) -> Detections:
        """Detections of one image from its views (one or more scale x flip `Sample`s); `size` = (H, W)."""
        h, w = size
        feats, scores, boxes = self._views(views)
        cls = scores.argmax(1)
        top = scores.gather(1, cls[:, None]).squeeze(1)
        argmax_scores = torch.zeros_like(scores).scatter_(1, cls[:, None], top[:, None])
        if boxes.dim() == 3:  # class-specific regression: each proposal's box for its class
            boxes = boxes[torch.arange(len(boxes)), cls]
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                             boxes[:, 3].clamp(0, h)], 1)  # fmt: skip
        rows, classes = ops.multiclass_nms(boxes, argmax_scores, self.cfg.nms, self.cfg.score_thresh)
        kept_scores = argmax_scores[rows, classes]
        order = torch.argsort(kept_scores, descending=True, stable=True)[: self.cfg.max_detections]
        rows, classes, kept_scores = rows[order], classes[order] + 1, kept_scores[order]
        det_boxes = boxes[rows]
        masks = self._masks(views, feats, det_boxes, classes, h, w)
        return Detections(det_boxes, classes, kept_scores, masks)

    def _masks(self, views, feats, boxes, classes, h, w) -> torch.Tensor:
        maps = []
        for s, (res3, res4, width) in zip(views, feats):
            rois = ops.rois_from_boxes([to_view(boxes, s, width).to(self.device)])
            m = self.model.mask_maps(res3, res4, rois, classes.to(self.device), self.cfg.masks)
            if m is None:  # detector only: the box is the mask
                return fill_boxes(boxes, h, w)
            maps.append((m.flip(-1) if s.flipped else m).float().cpu())
        return paste_masks(torch.stack(maps).mean(0), boxes, h, w, self.cfg.mask_threshold)


def test_views(cfg: Config) -> Tuple[Tuple[int, ...], bool]:
    """(scales, flip) of the test views: `test.scales` (empty: every scale of `data.scales`) and `test.flip`."""
    return tuple(cfg.test.scales or cfg.data.scales), cfg.test.flip


def _first(batch):
    return batch[0]


def image_views(data: InferenceDataset, workers: int) -> torch.utils.data.DataLoader:
    """The views of one image at a time (a list of Samples), loaded by `workers` processes."""
    return torch.utils.data.DataLoader(data, batch_size=1, collate_fn=_first, num_workers=workers)


def predict_split(model: CommunityNet, cfg: Config, root: Path, split: str, device: torch.device,
                  what: str = "inference") -> Dict[str, Detections]:  # fmt: skip
    """{image_id: Detections} for every image of a split, with the test views of the config."""
    data = InferenceDataset(root, split, cfg.data, *test_views(cfg))
    loader = image_views(data, cfg.data.workers)
    predictor = Predictor(model, cfg.test, device)
    out = {}
    bar = Progress(len(data), f"{what} {split}", "img")
    for i, views in enumerate(loader):
        image_id = views[0].image_id
        out[image_id] = predictor(views, data.data.image_size(image_id))
        bar.update(i + 1)
    return out
