"""Realistic inputs for the benchmarks."""
import torch


def proposals(n, height=600, width=800, device="cpu", seed=0):
    """Selective-Search-like boxes: anywhere in the image, up to half its size."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([width, height]) / 2 + 8
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:, 2].clamp_(max=width)
    boxes[:, 3].clamp_(max=height)
    return boxes.to(device)


def rois(n, batch, height, width, device="cpu", seed=0):
    idx = torch.arange(n).remainder(batch).float().unsqueeze(1)
    return torch.cat([idx.to(device), proposals(n, height, width, device, seed)], 1)
