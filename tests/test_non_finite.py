"""NaN and infinite numbers in every op that takes boxes: a defined result, the same on every
backend and in the references (docs/OPS.md, "Bad numbers").

- nms, batched_nms: a NaN score is never kept and suppresses nothing; +-inf are ordinary scores.
  multiclass_nms keeps only scores above `score_threshold`, which a NaN never is.
- box coordinates: IoU follows IEEE arithmetic (a NaN coordinate gives a NaN IoU, which never
  reaches a threshold, so such a box neither suppresses nor is suppressed).
- roi_pool: a roi with a NaN or infinite coordinate pools nothing (zeros, no gradient); huge
  finite coordinates are clamped far outside the map instead of overflowing.
"""
import math

import pytest
import torch
from random_inputs import random_rois, spoiled

import wsis.ops as W
from wsis.ops import reference as ref

NAN, INF = math.nan, math.inf


def test_nms_never_keeps_a_nan_score(device):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60.0]], device=device)
    scores = torch.tensor([NAN, 0.5, 0.4, INF], device=device)
    assert W.nms(boxes, scores, 0.5).tolist() == [3, 1]  # the NaN box suppressed nothing
    assert W.nms(boxes, torch.full((4,), NAN, device=device), 0.5).tolist() == []
    assert W.batched_nms(boxes, scores, torch.tensor([0, 0, 1, 1], device=device), 0.5).tolist() == [3, 1, 2]


def test_a_box_with_a_nan_coordinate_neither_suppresses_nor_is_suppressed(device):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, NAN, 10], [0, 0, 10, 10]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.7], device=device)
    assert W.nms(boxes, scores, 0.5).tolist() == [0, 1]
    rows, classes = W.multiclass_nms(boxes, scores[:, None], 0.5)
    assert rows.tolist() == [0, 1] and classes.tolist() == [0, 0]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.0, 0.5])
def test_nms_variants_match_the_references_on_spoiled_input(device, seed, thr):
    boxes, scores = spoiled(60, device, seed)
    assert torch.equal(W.nms(boxes, scores, thr), ref.nms(boxes, scores, thr))
    idxs = torch.arange(60, device=device) % 3
    assert torch.equal(W.batched_nms(boxes, scores, idxs, thr), ref.batched_nms(boxes, scores, idxs, thr))
    table = torch.stack([scores, scores.flip(0), scores.roll(7)], 1)
    for score_threshold in (0.2, -INF):
        got = W.multiclass_nms(boxes, table, thr, score_threshold, 10)
        want = ref.multiclass_nms(boxes, table, thr, score_threshold, 10)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert not table[got].isnan().any()


def test_box_iou_follows_ieee_arithmetic(device):
    boxes, _ = spoiled(40, device)
    got, want = W.box_iou(boxes, boxes), ref.box_iou(boxes, boxes)
    torch.testing.assert_close(got, want, equal_nan=True)
    assert got[boxes.isnan().any(1)].isnan().all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_pool_of_a_non_finite_roi_is_zero_with_no_gradient(device, dtype):
    x = torch.rand(2, 3, 12, 12, dtype=dtype, device=device, requires_grad=True)
    rois = random_rois(12, 2, 96.0, dtype=dtype).to(device)
    rois[0, 1] = NAN
    rois[1, 3] = INF
    rois[2, 2] = -INF
    rois[3, 1:] = torch.tensor([-1e30, -1e30, 1e30, 1e30])  # finite but far beyond int: clamped
    rois[4, 1:] = torch.tensor([1e30, 1e30, 2e30, 2e30])  # entirely outside the map
    out = W.roi_pool(x, rois, 3, 0.125)
    torch.testing.assert_close(out, ref.roi_pool(x, rois, 3, 0.125))
    assert out[:3].eq(0).all() and out[4].eq(0).all()
    # the clamped roi spans +-2^26 map cells: only its middle bin covers the map, and takes its maximum
    torch.testing.assert_close(out[3, :, 1, 1], x[int(rois[3, 0])].detach().amax((1, 2)))
    out[:3].sum().backward()
    assert x.grad.eq(0).all()


def test_oicr_assign_with_nan_and_infinite_boxes_matches_the_reference(device):
    boxes, scores = spoiled(50, device, seed=3)
    table = torch.stack([scores.nan_to_num(0.5).clamp(0, 1), scores.roll(3).nan_to_num(0.1).clamp(0, 1)], 1)
    labels = torch.tensor([1.0, 1.0], device=device)
    got, want = W.oicr_assign(boxes, table, labels), ref.oicr_assign(boxes, table, labels)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, equal_nan=True)
