"""Random boxes and rois for the tests."""
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
