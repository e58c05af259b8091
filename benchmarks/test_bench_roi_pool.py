import pytest
import torch
from bench_inputs import rois

from wsis.ops import reference as ref
from wsis.ops import roi_pool

# (features, rois, output size, spatial scale, image height, image width)
CASES = {
    "7x7": ((2, 1024, 38, 50), 2000, 7, 1 / 16, 600, 800),
    "28x28": ((2, 512, 75, 100), 256, 28, 1 / 8, 600, 800),
}


def _inputs(case, device, grad=False):
    shape, k, size, scale, h, w = CASES[case]
    x = torch.randn(shape, device=device, requires_grad=grad)
    return x, rois(k, shape[0], h, w, device), size, scale


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["wsis", "torchvision"])
def test_roi_pool_forward(run, device, tv, case, impl, benchmark):
    benchmark.group = f"roi_pool {case} forward [{device}]"
    fn = roi_pool if impl == "wsis" else tv.ops.roi_pool
    with torch.no_grad():
        run(fn, *_inputs(case, device))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["wsis", "torchvision"])
def test_roi_pool_forward_backward(run, device, tv, case, impl, benchmark):
    benchmark.group = f"roi_pool {case} forward+backward [{device}]"
    fn = roi_pool if impl == "wsis" else tv.ops.roi_pool
    x, r, size, scale = _inputs(case, device, grad=True)
    g = torch.randn(r.shape[0], x.shape[1], size, size, device=device)
    run(lambda: torch.autograd.grad(fn(x, r, size, scale), x, g))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", ["wsis", "torchvision"])
def test_roi_pool_backward(run, device, tv, case, impl, benchmark):
    benchmark.group = f"roi_pool {case} backward [{device}]"
    fn = roi_pool if impl == "wsis" else tv.ops.roi_pool
    x, r, size, scale = _inputs(case, device, grad=True)
    out = fn(x, r, size, scale)
    g = torch.randn_like(out)
    run(lambda: torch.autograd.grad(out, x, g, retain_graph=True))


@pytest.mark.parametrize("impl", ["wsis", "reference"])
def test_roi_pool_vs_reference(run, device, impl, benchmark):
    # The Python reference loops over every bin: measured on 64 of the 7x7 case's rois.
    benchmark.group = f"roi_pool 7x7, 64 rois, vs reference [{device}]"
    x, r, size, scale = _inputs("7x7", device)
    fn = roi_pool if impl == "wsis" else ref.roi_pool
    run(fn, x, r[:64], size, scale, rounds=1 if impl == "reference" else None)
