import pytest
import torch

import wsis.ops as W
from wsis.ops import reference as ref


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (1, 1, 1, 1), (3, 5, 7, 7), (4, 21, 28, 28), (2, 3, 5, 8)])
@pytest.mark.parametrize("sigma", [0.5, 3.0, 100.0])
def test_weighted_gap_matches_reference(device, shape, sigma):
    x = torch.randn(shape, device=device)
    torch.testing.assert_close(W.weighted_gap(x, sigma), ref.weighted_gap(x, sigma))


def test_weighted_gap_weights_sum_to_one(device):
    x = torch.full((2, 3, 28, 28), 2.5, device=device)
    torch.testing.assert_close(W.weighted_gap(x, 4.0), torch.full((2, 3), 2.5, device=device))


def test_weighted_gap_large_sigma_is_mean(device):
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64, device=device)
    torch.testing.assert_close(W.weighted_gap(x, 1e6), x.mean((-2, -1)))


def test_weighted_gap_gradcheck(device):
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: W.weighted_gap(t, 1.5), (x,))
    nc = torch.randn(5, 5, 3, 2, dtype=torch.float64, device=device).permute(3, 2, 0, 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: W.weighted_gap(t, 1.5), (nc,))


def test_weighted_gap_opcheck(device):
    x = torch.randn(2, 3, 5, 5, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.wsis.weighted_gap.default, (x, 2.0))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (3, 4, 21, 28, 28), (2, 0, 3, 4, 4), (1, 2, 2, 5, 3)])
def test_cam_pseudo_masks_matches_reference(device, shape):
    cams = torch.randn(shape, device=device)
    mean, mask = W.cam_pseudo_masks(cams, 0.4)
    want_mean, _ = ref.cam_pseudo_masks(cams, 0.4)
    torch.testing.assert_close(mean, want_mean)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, mean > 0.4)


def test_cam_pseudo_masks_constant_and_known_maps(device):
    cams = torch.zeros(2, 1, 2, 2, 2, device=device)
    cams[:, 0, 0] = 7.0  # constant map: normalises to 0 on every level
    cams[0, 0, 1] = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    cams[1, 0, 1] = torch.tensor([[4.0, 2.0], [1.0, 0.0]])
    mean, mask = W.cam_pseudo_masks(cams, 0.4)
    assert mean[0, 0].eq(0).all() and not mask[0, 0].any()
    torch.testing.assert_close(mean[0, 1], torch.tensor([[0.5, 0.375], [0.375, 0.5]], device=device))
    assert mask[0, 1].tolist() == [[True, False], [False, True]]  # 0.375 < xi = 0.4


def test_cam_pseudo_masks_no_gradient(device):
    cams = torch.randn(3, 2, 2, 4, 4, device=device, requires_grad=True)
    mean, mask = W.cam_pseudo_masks(cams)
    assert not mean.requires_grad and not mask.requires_grad


def test_cam_pseudo_masks_opcheck(device):
    torch.library.opcheck(torch.ops.wsis.cam_pseudo_masks.default, (torch.randn(3, 2, 4, 5, 5, device=device), 0.4))
