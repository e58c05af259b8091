import pytest
import torch
from random_inputs import random_boxes

import wsis.ops as W
from wsis.ops import reference as ref


def _assert_same(got, want):
    labels, weights, seeds, ious = got
    torch.testing.assert_close(labels, want[0], rtol=0, atol=0)
    torch.testing.assert_close(weights, want[1], rtol=0, atol=0)
    torch.testing.assert_close(seeds, want[2], rtol=0, atol=0)
    torch.testing.assert_close(ious, want[3])


def test_oicr_assign_hand_made(device):
    boxes = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 12], [50, 50, 60, 60], [51, 50, 61, 60], [0, 0, 100, 100.0]], device=device
    )
    scores = torch.tensor(
        [[0.9, 0.0, 0.1], [0.5, 0.0, 0.1], [0.1, 0.0, 0.8], [0.1, 0.0, 0.7], [0.2, 0.0, 0.2]], device=device
    )
    labels, weights, seeds, ious = W.oicr_assign(boxes, scores, torch.tensor([1, 0, 1], device=device))
    assert seeds.tolist() == [0, 0, 2, 2, 0]
    assert labels.tolist() == [1, 1, 3, 3, 0]  # box 4 overlaps seed 0 by 0.01 < 0.5
    assert weights.tolist() == pytest.approx([0.9, 0.9, 0.8, 0.8, 0.0])  # IoU 0.01 < bg 0.1: ignored
    assert ious[1].item() == pytest.approx(100 / 120)
    assert ious[3].item() == pytest.approx(90 / 110)


def test_oicr_assign_seed_not_reused(device):
    boxes = random_boxes(3, device=device)
    scores = torch.tensor([[0.9, 0.9], [0.1, 0.2], [0.3, 0.1]], device=device)
    _, _, seeds, _ = W.oicr_assign(boxes, scores, torch.tensor([1, 1], device=device))
    # class 0 takes row 0; class 1 cannot take row 0 again and takes row 1
    assert set(seeds.tolist()) <= {0, 1}
    assert seeds[0].item() == 0 and seeds[1].item() == 1


def test_oicr_assign_ties(device):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10.0]], device=device)
    scores = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], device=device)
    got = W.oicr_assign(boxes, scores, torch.tensor([1.0, 1.0], device=device))
    assert got[2].tolist() == [0, 0, 0]  # score tie: lowest row; IoU tie: earlier class
    assert got[0].tolist() == [1, 1, 1]
    _assert_same(got, ref.oicr_assign(boxes, scores, torch.tensor([1.0, 1.0], device=device)))


def test_oicr_assign_more_classes_than_proposals(device):
    boxes = random_boxes(1, device=device)
    got = W.oicr_assign(boxes, torch.rand(1, 4, device=device), torch.ones(4, device=device))
    assert got[0].tolist() == [1] and got[2].tolist() == [0]


@pytest.mark.parametrize("r,c", [(1, 1), (5, 3), (200, 20), (2000, 20)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_oicr_assign_matches_reference(device, r, c, dtype):
    g = torch.Generator().manual_seed(r + c)
    boxes = random_boxes(r, dtype=dtype, generator=g).to(device)
    boxes[: r // 10] = 0  # empty boxes: IoU 0 with everything
    scores = torch.rand(r, c, dtype=dtype, generator=g).to(device)
    labels = (torch.rand(c, generator=g) < 0.3).to(device)
    labels[c // 2] = True
    for fg, bg in [(0.5, 0.1), (0.7, 0.0), (0.0, 0.0)]:
        _assert_same(W.oicr_assign(boxes, scores, labels.float(), fg, bg), ref.oicr_assign(boxes, scores, labels.float(), fg, bg))


def test_oicr_assign_empty(device):
    got = W.oicr_assign(torch.zeros(0, 4, device=device), torch.zeros(0, 3, device=device), torch.tensor([0, 1, 0], device=device))
    assert all(t.shape == (0,) for t in got)


def test_oicr_assign_no_positive_class_is_an_error(device):
    with pytest.raises(RuntimeError, match="image_labels"):
        W.oicr_assign(random_boxes(4, device=device), torch.rand(4, 3, device=device), torch.zeros(3, device=device))


def test_oicr_assign_opcheck(device):
    boxes, scores = random_boxes(20, device=device), torch.rand(20, 5, device=device)
    labels = torch.tensor([0, 1, 0, 1, 1.0], device=device)
    torch.library.opcheck(torch.ops.wsis.oicr_assign.default, (boxes, scores, labels, 0.5, 0.1))
