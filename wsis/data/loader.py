"""torch datasets and collate over a VOC-format tree with cached proposals (docs/DESIGN.md §4).

Every number comes from the config's `data` section (`DataConfig`). Training: one random scale of
`data.scales` for the shorter side (the longer side capped at `data.max_size`), a random
horizontal flip (boxes flipped with it), ImageNet normalisation. The draw of sample `i` in epoch
`e` comes from a generator seeded by (seed, e, i), so a resumed run sees the same data. Testing:
the scales the test config names, each unflipped and, if asked, flipped.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from ..config import DataConfig
from . import proposals, segments
from .formats import open_split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Sample:
    image: torch.Tensor  # float32 [3, H, W], normalised
    boxes: torch.Tensor  # float32 [R, 4] proposals in this image's pixels
    labels: torch.Tensor  # float32 [C] image-level labels
    image_id: str
    scale: float  # this image's pixels per original pixel
    flipped: bool
    segments: Optional[torch.Tensor] = None  # int32 [G, H, W] graph segment ids of this image (with model.snap_pseudo_masks)


def _read_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def flip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Boxes `[..., 4]` mirrored in an image `width` pixels wide."""
    return torch.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], -1)


def transform(image: Image.Image, boxes: np.ndarray, shorter: int, max_size: int, flip: bool):
    """Resize so the shorter side is `shorter` (the longer at most `max_size`), flip, normalise."""
    w, h = image.size
    scale = min(shorter / min(w, h), max_size / max(w, h))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    x = torch.from_numpy(np.asarray(image.resize((nw, nh), Image.BILINEAR), dtype=np.float32) / 255.0)
    x = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    b = torch.from_numpy(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4) * torch.tensor(
        [nw / w, nh / h, nw / w, nh / h]
    )
    if flip:
        x = x.flip(1)
        b = flip_boxes(b, nw)
    return x.permute(2, 0, 1).contiguous(), b, scale


class _ProposalImages(torch.utils.data.Dataset):
    def __init__(self, root: Union[str, Path], split: str, cfg: DataConfig, training: bool = False):
        self.data = open_split(root, split, training, cfg.classes, cfg.negatives)
        self.root, self.cfg = Path(root), cfg

    def __len__(self) -> int:
        return len(self.data)

    def _load(self, index: int):
        image_id = self.data.image_ids[index]
        image = _read_rgb(self.data.image_path(image_id))
        cfg = self.cfg
        boxes = proposals.filter_boxes(proposals.load(self.root, image_id, cfg.proposal_mode, cfg.proposal_scale),
                                       image.height, image.width, cfg.min_box, cfg.max_boxes)  # fmt: skip
        return image_id, image, boxes, self.data.labels(image_id)


def resize_ids(ids: np.ndarray, height: int, width: int, flip: bool) -> torch.Tensor:
    """Segment ids `[G, h, w]` resized (nearest, at the cell centres) to `height x width`, then mirrored with `flip`."""
    _, h, w = ids.shape
    ys = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    out = ids[:, ys[:, None], xs[None, :]]
    return torch.from_numpy((out[:, :, ::-1] if flip else out).astype(np.int32))


class TrainDataset(_ProposalImages):
    """`data.train_split` of `root` with the training draws of `seed`; with `segments`, each sample
    carries its cached graph segments (`data.segments`), resized and flipped with the image."""

    def __init__(self, root: Union[str, Path], cfg: DataConfig, seed: int, segments: bool = False):
        super().__init__(root, cfg.train_split, cfg, training=True)
        self.seed, self.segments = seed, segments

    def __getitem__(self, key: Tuple[int, int]) -> Sample:
        """Sample `index` of epoch `epoch`, for a key `(epoch, index)` (what `IterationBatches` yields)."""
        epoch, index = key
        image_id, image, boxes, labels = self._load(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        shorter = int(self.cfg.scales[rng.integers(len(self.cfg.scales))])
        flip = bool(self.cfg.flip and rng.random() < 0.5)
        if 0 < self.cfg.train_boxes < len(boxes):  # a new subset each epoch, kept in the proposals' order
            boxes = boxes[np.sort(rng.choice(len(boxes), self.cfg.train_boxes, replace=False))]
        x, b, scale = transform(image, boxes, shorter, self.cfg.max_size, flip)
        ids = None
        if self.segments:
            ids = resize_ids(segments.load(self.root, image_id), x.shape[1], x.shape[2], flip)
        return Sample(x, b, labels, image_id, scale, flip, ids)


class InferenceDataset(_ProposalImages):
    """Item i: the list of Samples of image i at every one of `scales`, unflipped then, with `flip`, flipped."""

    def __init__(self, root: Union[str, Path], split: str, cfg: DataConfig, scales: Sequence[int], flip: bool):
        super().__init__(root, split, cfg)
        self.scales, self.flip = tuple(scales), flip

    def __getitem__(self, index: int) -> List[Sample]:
        image_id, image, boxes, labels = self._load(index)
        return views(image, boxes, labels, image_id, self.scales, self.cfg.max_size, self.flip)


def views(image: Image.Image, boxes: np.ndarray, labels: torch.Tensor, image_id: str, scales: Sequence[int],
          max_size: int, flip: bool) -> List[Sample]:  # fmt: skip
    """The test views of one image: every scale, unflipped and, with `flip`, flipped."""
    out = []
    for shorter in scales:
        for flipped in (False, True) if flip else (False,):
            x, b, scale = transform(image, boxes, shorter, max_size, flipped)
            out.append(Sample(x, b, labels, image_id, scale, flipped))
    return out


@dataclass
class Batch:
    images: torch.Tensor  # float32 [B, 3, H, W], zero-padded at the bottom and right
    rois: torch.Tensor  # float32 [K, 5]: batch index, x1, y1, x2, y2
    labels: torch.Tensor  # float32 [B, C]
    samples: List[Sample]


def collate(samples: List[Sample]) -> Batch:
    """Images of different sizes padded into one tensor; proposals as roi_pool rows."""
    h = max(s.image.shape[1] for s in samples)
    w = max(s.image.shape[2] for s in samples)
    images = torch.zeros(len(samples), 3, h, w)
    for i, s in enumerate(samples):
        images[i, :, : s.image.shape[1], : s.image.shape[2]] = s.image
    rois = torch.cat([torch.cat([torch.full((len(s.boxes), 1), float(i)), s.boxes], 1) for i, s in enumerate(samples)])
    return Batch(
        images=images,
        rois=rois,
        labels=torch.stack([s.labels for s in samples]),
        samples=list(samples),
    )
