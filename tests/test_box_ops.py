import pytest
import torch
from random_inputs import random_boxes

import wsis.ops as W
from wsis.ops import reference as ref


@pytest.mark.parametrize("n,m", [(0, 0), (0, 5), (4, 0), (1, 1), (7, 13), (300, 257)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_iou_matches_reference(device, n, m, dtype):
    a = random_boxes(n, dtype=dtype, device=device)
    b = random_boxes(m, dtype=dtype, device=device)
    torch.testing.assert_close(W.box_iou(a, b), ref.box_iou(a, b), rtol=1e-6, atol=1e-7)


def test_box_iou_batched(device):
    a = random_boxes(2 * 3 * 40, device=device).view(6, 40, 4)
    b = random_boxes(6 * 17, device=device).view(6, 17, 4)
    out = W.box_iou(a, b)
    assert out.shape == (6, 40, 17)
    for i in range(6):
        torch.testing.assert_close(out[i], W.box_iou(a[i], b[i]), rtol=0, atol=0)


def test_box_iou_equals_torchvision_bitwise(tv):
    a, b = random_boxes(500, 600.0), random_boxes(400, 600.0)
    b[:10] = 0  # zero-area boxes: NaN against each other, as torchvision
    a[:5] = 0
    assert torch.equal(W.box_iou(a, b).nan_to_num(-1), tv.ops.box_iou(a, b).nan_to_num(-1))


def test_box_iou_non_contiguous_and_degenerate(device):
    a = random_boxes(20, device=device)
    b = random_boxes(30, device=device).t().contiguous().t()  # column-major
    assert not b.is_contiguous()
    torch.testing.assert_close(W.box_iou(a, b), ref.box_iou(a, b))
    line = torch.tensor([[1.0, 1.0, 1.0, 5.0]], device=device)  # zero width
    assert W.box_iou(line, a).eq(0).all()


@pytest.mark.parametrize("n", [0, 1, 2, 50, 800])
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.5, 1.0])
def test_nms_matches_reference(device, n, thr):
    boxes = random_boxes(n, device=device)
    scores = torch.rand(n, device=device)
    assert torch.equal(W.nms(boxes, scores, thr), ref.nms(boxes, scores, thr))


def test_nms_score_ties_keep_lower_index(device):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50.0]], device=device)
    scores = torch.tensor([0.5, 0.5, 0.5, 0.9], device=device)
    assert W.nms(boxes, scores, 0.5).tolist() == [3, 0, 2]


def test_nms_equals_torchvision(tv):
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        boxes = random_boxes(1000, 600.0, generator=g)
        scores = torch.rand(1000, generator=g)
        for thr in (0.3, 0.5, 0.7):
            assert torch.equal(W.nms(boxes, scores, thr), tv.ops.nms(boxes, scores, thr))


@pytest.mark.parametrize("n,classes", [(0, 3), (1, 1), (60, 1), (500, 7), (500, 200)])
def test_batched_nms_matches_reference(device, n, classes):
    boxes = random_boxes(n, device=device)
    scores = torch.rand(n, device=device)
    idxs = torch.randint(0, classes, (n,), device=device)
    assert torch.equal(W.batched_nms(boxes, scores, idxs, 0.5), ref.batched_nms(boxes, scores, idxs, 0.5))


def distinct_scores(n):
    """torchvision orders equal scores arbitrarily in batched_nms (an unstable sort): avoid ties."""
    return (torch.randperm(n).float() + 1) / n  # > 0: multiclass_nms keeps only score > 0


def test_batched_nms_equals_torchvision(tv):
    boxes, scores = random_boxes(2000, 600.0), distinct_scores(2000)
    idxs = torch.randint(-3, 20, (2000,))  # any integer ids, negative ones too
    assert torch.equal(W.batched_nms(boxes, scores, idxs, 0.5), tv.ops.batched_nms(boxes, scores, idxs, 0.5))
    assert torch.equal(
        W.batched_nms(boxes, scores, idxs.int(), 0.5), tv.ops.batched_nms(boxes, scores, idxs, 0.5)
    )


@pytest.mark.parametrize("per_class_boxes", [False, True])
@pytest.mark.parametrize("r,c", [(0, 4), (1, 1), (40, 3), (300, 20)])
@pytest.mark.parametrize("score_threshold,max_per_class", [(0.0, None), (0.3, None), (0.05, 4), (0.0, 0)])
def test_multiclass_nms_matches_reference(device, per_class_boxes, r, c, score_threshold, max_per_class):
    boxes = random_boxes(r * c if per_class_boxes else r, device=device)
    if per_class_boxes:
        boxes = boxes.view(r, c, 4)
    scores = torch.rand(r, c, device=device)
    got = W.multiclass_nms(boxes, scores, 0.3, score_threshold, max_per_class)
    want = ref.multiclass_nms(boxes, scores, 0.3, score_threshold, max_per_class)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_multiclass_nms_score_ties(device):
    scores = torch.full((6, 3), 0.5, device=device)
    boxes = random_boxes(6, device=device)
    got = W.multiclass_nms(boxes, scores, 0.3)
    want = ref.multiclass_nms(boxes, scores, 0.3)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_multiclass_nms_equals_torchvision_batched_nms(tv):
    r, c = 500, 20
    boxes, scores = random_boxes(r, 600.0), distinct_scores(r * c).view(r, c)
    rows, classes = W.multiclass_nms(boxes, scores, 0.3)
    flat = tv.ops.batched_nms(boxes.repeat_interleave(c, 0), scores.flatten(), torch.arange(c).repeat(r), 0.3)
    assert torch.equal(rows * c + classes, flat)


def _opcheck(op, args):
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_opcheck_box_ops(device):
    a, b = random_boxes(30, device=device), random_boxes(20, device=device)
    s = torch.rand(30, device=device)
    _opcheck(torch.ops.wsis.box_iou.default, (a, b))
    _opcheck(torch.ops.wsis.box_iou.default, (a.view(3, 10, 4), b.view(2, 10, 4)[:1].expand(3, 10, 4)))
    _opcheck(torch.ops.wsis.nms.default, (a, s, 0.5))
    _opcheck(torch.ops.wsis.batched_nms.default, (a, s, torch.randint(0, 3, (30,), device=device), 0.5))
    _opcheck(torch.ops.wsis.multiclass_nms.default, (a, torch.rand(30, 4, device=device), 0.5, 0.1, 3))
