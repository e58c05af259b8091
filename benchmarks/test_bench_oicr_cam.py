import numpy as np
import pytest
import torch
from bench_inputs import proposals
from numpy_oicr import oicr_assign_numpy

import wsis.ops as W
from wsis.ops import reference as ref


def _oicr_inputs(device):
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(2000, 20, generator=g)
    labels = torch.zeros(20)
    labels[[3, 8, 14]] = 1  # a typical VOC image has 1 to 3 classes
    return proposals(2000, device=device), scores.to(device), labels.to(device)


@pytest.mark.parametrize("impl", ["wsis", "reference", "numpy"])
def test_oicr_assign(run, device, impl, benchmark):
    benchmark.group = f"oicr_assign R=2000 C=20 [{device}]"
    boxes, scores, labels = _oicr_inputs(device)
    if impl == "numpy":
        b, s, l = (t.cpu().numpy() for t in (boxes, scores, labels))
        run(oicr_assign_numpy, b, s, l)
    else:
        run(W.oicr_assign if impl == "wsis" else ref.oicr_assign, boxes, scores, labels)


def test_numpy_baseline_is_the_same_rule():
    boxes, scores, labels = _oicr_inputs("cpu")
    ours = W.oicr_assign(boxes, scores, labels)
    theirs = oicr_assign_numpy(boxes.numpy(), scores.numpy(), labels.numpy())
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-6)


@pytest.mark.parametrize("impl", ["wsis", "reference"])
def test_cam_pseudo_masks(run, device, impl, benchmark):
    benchmark.group = f"cam_pseudo_masks L=3 R=256 K=21 T=28 [{device}]"
    cams = torch.randn(3, 256, 21, 28, 28, device=device)
    run(W.cam_pseudo_masks if impl == "wsis" else ref.cam_pseudo_masks, cams, 0.4)


@pytest.mark.parametrize("impl", ["wsis", "reference"])
def test_weighted_gap_forward_backward(run, device, impl, benchmark):
    benchmark.group = f"weighted_gap R=256 K=21 T=28 forward+backward [{device}]"
    x = torch.randn(256, 21, 28, 28, device=device, requires_grad=True)
    fn = W.weighted_gap if impl == "wsis" else ref.weighted_gap
    run(lambda: torch.autograd.grad(fn(x, 5.6).sum(), x))
