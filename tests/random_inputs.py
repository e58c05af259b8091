"""Random boxes and rois for the tests."""
import math

import torch


def random_boxes(n, size=100.0, max_wh=None, dtype=torch.float32, device="cpu", generator=None):
    """n boxes inside a size x size image, each up to max_wh wide and tall."""
    max_wh = size / 2 if max_wh is None else max_wh
    xy = torch.rand(n, 2, generator=generator, dtype=dtype) * size
    wh = torch.rand(n, 2, generator=generator, dtype=dtype) * max_wh
    return torch.cat([xy, xy + wh], 1).to(device)


def random_rois(k, batch, size=100.0, **kw):
    boxes = random_boxes(k, size, **kw)
    idx = torch.randint(0, batch, (k, 1)).to(boxes)
    return torch.cat([idx, boxes], 1)


def spoiled(n, device, seed=0):
    """Random boxes and scores with NaN and +-inf sprinkled into both."""
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(n, 60.0, generator=g)
    scores = torch.rand(n, generator=g)
    pick = torch.randperm(n, generator=g)
    scores[pick[:5]] = math.nan
    scores[pick[5:7]] = math.inf
    scores[pick[7:9]] = -math.inf
    boxes[pick[9:12], torch.randint(0, 4, (3,), generator=g)] = math.nan
    boxes[pick[12], 2] = math.inf
    boxes[pick[13], 0] = -math.inf
    boxes[pick[14]] = torch.tensor([-math.inf, -math.inf, math.inf, math.inf])
    return boxes.to(device), scores.to(device)
