import pytest
import torch
from random_inputs import random_rois

import wsis.ops as W
from wsis.ops.roi_pool import backward_by_index
from wsis.ops import reference as ref


@pytest.mark.parametrize(
    "batch,channels,h,w,k,size,scale",
    [(1, 1, 5, 5, 1, 7, 1.0), (2, 3, 10, 12, 9, 2, 0.5), (2, 8, 16, 16, 20, (3, 4), 0.25), (1, 4, 7, 9, 0, 7, 1.0)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_pool_matches_reference(device, batch, channels, h, w, k, size, scale, dtype):
    x = torch.randn(batch, channels, h, w, dtype=dtype, device=device)
    rois = random_rois(k, batch, size=h / scale).to(dtype).to(device)
    torch.testing.assert_close(W.roi_pool(x, rois, size, scale), ref.roi_pool(x, rois, size, scale), rtol=0, atol=0)


def test_roi_pool_edge_rois(device):
    x = torch.randn(2, 3, 8, 8, device=device)
    rois = torch.tensor(
        [
            [0, -20, -20, -10, -10],  # wholly outside: zeros
            [1, 5, 5, 30, 30],  # partly outside
            [0, 3, 3, 3, 3],  # zero area: a 1x1 roi
            [1, 6, 6, 2, 2],  # x2 < x1: malformed, forced to 1x1
            [0, 0, 0, 7, 7],  # the whole map
            [1, 2.5, 2.5, 4.5, 4.5],  # .5 rounds away from zero
        ],
        dtype=torch.float32,
        device=device,
    )
    out = W.roi_pool(x, rois, 4, 1.0)
    torch.testing.assert_close(out, ref.roi_pool(x, rois, 4, 1.0), rtol=0, atol=0)
    assert out[0].eq(0).all()


@pytest.mark.parametrize("scale", [1 / 16, 0.5])
def test_roi_pool_equals_torchvision(tv, scale):
    x = torch.randn(2, 16, 20, 24, requires_grad=True)
    rois = random_rois(100, 2, size=24 / scale)
    rois[:5, 1:] = -3  # outside
    ours = W.roi_pool(x, rois, 7, scale)
    theirs = tv.ops.roi_pool(x, rois, 7, scale)
    assert torch.equal(ours, theirs)
    g = torch.randn_like(ours)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0])


def test_roi_pool_channels_last_and_non_contiguous(device):
    x = torch.randn(2, 6, 9, 11, device=device)
    rois = random_rois(12, 2, size=9.0).to(device)
    want = W.roi_pool(x, rois, 3)
    torch.testing.assert_close(W.roi_pool(x.to(memory_format=torch.channels_last), rois, 3), want, rtol=0, atol=0)
    wide = torch.cat([rois, rois], 1)[:, ::2]  # strided view of the same values
    assert not wide.is_contiguous()
    rois_nc = torch.cat([rois[:, :1], rois[:, 1:]], 1).t().contiguous().t()
    torch.testing.assert_close(W.roi_pool(x, rois_nc, 3), want, rtol=0, atol=0)


def test_roi_pool_list_of_boxes(device):
    x = torch.randn(2, 3, 10, 10, device=device)
    b0, b1 = random_rois(4, 1, size=10.0)[:, 1:], random_rois(3, 1, size=10.0)[:, 1:]
    rois = W.rois_from_boxes([b0.to(device), b1.to(device)])
    assert rois[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(W.roi_pool(x, [b0.to(device), b1.to(device)], 2), W.roi_pool(x, rois, 2))
    assert W.RoIPool(2, 1.0)(x, rois).shape == (7, 3, 2, 2)


def test_roi_pool_gradcheck(device):
    # Random values in float64 make every bin's maximum unique, where the gradient is defined.
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, device=device, requires_grad=True)
    rois = random_rois(5, 2, size=6.0, dtype=torch.float64).to(device)
    assert torch.autograd.gradcheck(lambda t: W.roi_pool(t, rois, 3, 1.0), (x,))


def test_roi_pool_gradient_matches_reference(device):
    x = torch.randn(2, 4, 9, 9, device=device, requires_grad=True)
    rois = random_rois(10, 2, size=9.0).to(device)
    g = torch.randn(10, 4, 3, 3, device=device)
    ours = torch.autograd.grad(W.roi_pool(x, rois, 3), x, g)[0]
    theirs = torch.autograd.grad(ref.roi_pool(x, rois, 3, 1.0), x, g)[0]
    torch.testing.assert_close(ours, theirs)


def test_roi_pool_empty(device):
    x = torch.randn(1, 3, 5, 5, device=device, requires_grad=True)
    out = W.roi_pool(x, torch.zeros(0, 5, device=device), 7)
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert x.grad.eq(0).all()


def test_roi_pool_opcheck(device):
    x = torch.randn(2, 3, 6, 7, device=device, requires_grad=True)
    rois = random_rois(5, 2, size=6.0).to(device)
    torch.library.opcheck(torch.ops.wsis.roi_pool.default, (x, rois, 1.0, 3, 3))


@pytest.mark.parametrize("k", [0, 1, 30])
def test_roi_pool_backward_by_index_equals_the_kernel(device, k):
    """The deterministic backward (CUDA under torch.use_deterministic_algorithms) gives the kernel's gradient."""
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64, device=device)
    rois = random_rois(k, 2, size=9.0, dtype=torch.float64).to(device)
    if k:
        rois[0, 1:] = -30  # wholly outside: empty bins, argmax -1
    out, argmax = torch.ops.wsis.roi_pool(x, rois, 1.0, 3, 3)
    g = torch.randn_like(out)
    want = torch.ops.wsis._roi_pool_backward(g, rois, argmax, *x.shape)
    got = backward_by_index(g, rois, argmax, tuple(x.shape))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_roi_pool_backward_under_deterministic_algorithms(device):
    x = torch.randn(2, 4, 9, 9, device=device, requires_grad=True)
    rois = random_rois(40, 2, size=9.0).to(device)
    g = torch.randn(40, 4, 3, 3, device=device)
    want = torch.autograd.grad(W.roi_pool(x, rois, 3), x, g)[0]
    torch.use_deterministic_algorithms(True)
    try:
        runs = [torch.autograd.grad(W.roi_pool(x, rois, 3), x, g)[0] for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(r, runs[0]) for r in runs)
    torch.testing.assert_close(runs[0], want)
