"""The classifier probe: how fast a backbone's features learn the synthetic classes from image labels.

    python benchmarks/probe.py [--backbone efficientnet_lite0] [--weights imagenet] [--iters 400] ...

A 1x1 conv on the backbone's frozen stride-16 map, global max pooling and a BCE loss on the
image-level labels: the easiest form of the signal that the detector learns from. It prints the
validation image-level AP (mean over classes) as training goes, so that a backbone or weights
choice can be checked in minutes before a full run. The data are a synthetic set written once
into `--data` (default: a temporary folder).
"""
import argparse
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsis.data.loader import transform
from wsis.data.synthetic import Settings, generate
from wsis.data.voc import VOCDataset
from wsis.evaluation.metrics import average_precision
from wsis.model.backbone import Backbone


def _tensors(root: Path, split: str, size: int):
    data = VOCDataset(root, split)
    images, labels = [], []
    for image_id in data.image_ids:
        with Image.open(data.image_path(image_id)) as im:
            x, _, _ = transform(im.convert("RGB"), np.zeros((0, 4)), size, 4 * size, False)
        images.append(x)
        labels.append(data.labels(image_id))
    return images, torch.stack(labels)


def image_ap(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the AP of ranking the images by their score of the class."""
    aps = [average_precision(labels[:, c].numpy() > 0, scores[:, c].numpy(), int(labels[:, c].sum()))
           for c in range(labels.shape[1])]  # fmt: skip
    return 100 * float(np.nanmean(aps))


def probe(root: Path, backbone: str = "efficientnet_lite0", weights: str = "imagenet", iters: int = 400,
          batch: int = 8, size: int = 192, lr: float = 1e-3, eval_every: int = 100, seed: int = 0) -> List[Dict]:  # fmt: skip
    """[{iteration, seconds, val_AP}] of training the probe on `root`'s train split."""
    torch.manual_seed(seed)
    net = Backbone(backbone, weights, "all").eval()
    train_x, train_y = _tensors(root, "train", size)
    val_x, val_y = _tensors(root, "val", size)
    head = torch.nn.Conv2d(net.channels["res4"], train_y.shape[1], 1)
    opt = torch.optim.Adam(head.parameters(), lr=lr)

    def logits(images: List[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            feats = [net.trunk(x[None])[1] for x in images]  # sizes differ: one image at a time
        return torch.cat([head(f).amax((2, 3)) for f in feats])

    g = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    for it in range(1, iters + 1):
        idx = torch.randint(len(train_x), (batch,), generator=g).tolist()
        loss = F.binary_cross_entropy_with_logits(logits([train_x[i] for i in idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % eval_every == 0 or it == iters:
            with torch.no_grad():
                ap = image_ap(logits(val_x), val_y)
            history.append({"iteration": it, "seconds": time.perf_counter() - start, "val_AP": ap})
    return history


def synthetic(root: Path, num_train: int, num_val: int, seed: int = 0) -> Path:
    return generate(root, Settings(num_train=num_train, num_val=num_val, seed=seed), progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet", help="imagenet, none or a state dict file")
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=192, help="shorter image side")
    parser.add_argument("--num-train", type=int, default=800)
    parser.add_argument("--num-val", type=int, default=150)
    parser.add_argument("--data", type=Path, help="folder for the synthetic set (kept; default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic(args.data or Path(tmp) / "data", args.num_train, args.num_val)
        for h in probe(root, args.backbone, args.weights, args.iters, args.batch, args.size):
            print(f"iteration {h['iteration']:5d}  {h['seconds']:7.1f} s  val image-level AP {h['val_AP']:.1f}")


if __name__ == "__main__":
    main()
