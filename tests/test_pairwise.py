"""BoxInst's pairwise colour term: LAB colours, colours per roi cell, the loss against a loop."""
import math

import pytest
import torch

from wsis.model.pairwise import pairwise_loss, rgb_to_lab, roi_colours


def test_rgb_to_lab_known_colours():
    rgb = torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]]).view(1, 4, 3).permute(2, 0, 1)[None]
    lab = rgb_to_lab(rgb)[0].permute(1, 2, 0).reshape(4, 3)
    expected = torch.tensor([[100.0, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86]])
    torch.testing.assert_close(lab, expected, atol=0.05, rtol=0)


def test_roi_colours_sample_the_roi_not_the_image():
    lab = torch.zeros(2, 3, 64, 64)
    lab[1, 0, :, 32:] = 50.0  # image 1: right half L=50
    rois = torch.tensor([[1.0, 36, 4, 60, 28], [1.0, 4, 4, 28, 28], [0.0, 36, 4, 60, 28]])
    c = roi_colours(lab, rois, 7)
    assert c.shape == (3, 3, 7, 7)
    assert torch.allclose(c[0, 0], torch.full((7, 7), 50.0)) and c[1].abs().max() == 0 and c[2].abs().max() == 0


def loop_loss(logits, lab, tau):
    s, t, _ = logits.shape
    total, count = 0.0, 0
    for r in range(s):
        for i in range(t):
            for j in range(t):
                for di, dj in ((0, 2), (2, 0), (2, 2), (2, -2)):
                    k, m = i + di, j + dj
                    if not (0 <= k < t and 0 <= m < t):
                        continue
                    if math.exp(-float((lab[r, :, i, j] - lab[r, :, k, m]).norm()) / 2) < tau:
                        continue
                    p, q = torch.sigmoid(logits[r, i, j]).item(), torch.sigmoid(logits[r, k, m]).item()
                    total -= math.log(p * q + (1 - p) * (1 - q))
                    count += 1
    return total / max(count, 1), count


def test_pairwise_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 9, generator=g, dtype=torch.float64) * 3
    lab = torch.randint(0, 3, (3, 3, 9, 9), generator=g).double()  # small steps: about half the pairs similar
    expected, count = loop_loss(logits, lab, 0.3)
    assert 0 < count < 3 * 4 * 9 * 9
    assert pairwise_loss(logits, lab, 0.3).item() == pytest.approx(expected, rel=1e-6)


def test_pairwise_loss_pulls_similar_neighbours_together():
    lab = torch.zeros(1, 3, 8, 8)
    lab[..., 4:] = 60.0  # two flat regions: pairs across the edge are not similar
    agree = torch.full((1, 8, 8), -5.0)
    agree[..., 4:] = 5.0  # the mask follows the colour edge
    split = agree.clone().transpose(-1, -2)  # the mask cuts across both regions
    assert pairwise_loss(agree, lab, 0.3) < 0.05 < 1 < pairwise_loss(split, lab, 0.3)
    x = split.clone().requires_grad_()
    pairwise_loss(x, lab, 0.3).backward()
    assert x.grad.abs().sum() > 0
    assert pairwise_loss(torch.zeros(0, 8, 8), torch.zeros(0, 3, 8, 8), 0.3).item() == 0
