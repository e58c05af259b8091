"""Kernel benchmarks at the paper's sizes: `pytest benchmarks` (compare with --benchmark-group-by=group).

Each benchmark group holds our op, its pure-PyTorch reference and, where one exists, the
torchvision op; RESULTS.md records the ratios. On CUDA every timed call ends with a synchronize.
"""
import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def tv():
    return pytest.importorskip("torchvision", reason="torchvision is not installed")


@pytest.fixture
def run(benchmark, device):
    """benchmark(fn) that waits for the GPU inside the timed region."""

    def timed(fn, *args, rounds=None):
        def call():
            out = fn(*args)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        if rounds is not None:
            return benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
        return benchmark(call)

    return timed


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
