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


def _iou(p, q):
    ix = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _assert_matches_loops(got, want):
    assert got[0].tolist() == want[0] and got[2].tolist() == want[2]
    assert got[1].tolist() == pytest.approx(want[1]) and got[3].tolist() == pytest.approx(want[3])


def _multi_seed_loops(boxes, scores, image_labels, fg_thresh, bg_thresh, top, seed_nms):
    """multi_seed_assign written out with loops over Python lists."""
    b, s = boxes.tolist(), scores.tolist()
    r = len(b)
    seeds = []  # (row, class) in order: classes ascending, then decreasing score
    for c in [c for c in range(len(image_labels)) if image_labels[c] == 1]:
        order = sorted(range(r), key=lambda i: (-s[i][c], i))[:top]
        kept = []
        for i in order:
            if all(_iou(b[i], b[j]) <= seed_nms for j in kept):
                kept.append(i)
        seeds += [(i, c) for i in kept]
    out = []
    for i in range(r):
        ious = [_iou(b[i], b[j]) for j, _ in seeds]
        best = max(ious)
        row, c = seeds[ious.index(best)]  # the first seed of highest IoU
        out.append((c + 1 if best >= fg_thresh else 0, 0.0 if best < bg_thresh else s[row][c], row, best))
    return [list(x) for x in zip(*out)]


def test_multi_seed_assign_hand_made(device):
    # two instances of class 0 far apart, a box elsewhere and a box over everything
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 12], [50, 50, 60, 60], [51, 50, 61, 60], [80, 0, 90, 10],
                          [0, 0, 100, 100.0]], device=device)  # fmt: skip
    scores = torch.tensor([[0.9, 0.3], [0.5, 0.2], [0.8, 0.1], [0.7, 0.1], [0.1, 0.6], [0.2, 0.2]], device=device)
    y = torch.tensor([1, 0], device=device)
    labels, weights, seeds, ious = W.multi_seed_assign(boxes, scores, y, top=0.5)
    # class 0's top 3 are rows 0, 2, 1; NMS at 0.2 drops row 1 (IoU 0.83 with row 0): seeds 0 and 2
    assert seeds.tolist() == [0, 0, 2, 2, 0, 0]
    assert labels.tolist() == [1, 1, 1, 1, 0, 0]
    assert weights.tolist() == pytest.approx([0.9, 0.9, 0.8, 0.8, 0.0, 0.0])  # rows 4, 5: IoU < 0.1, ignored
    assert ious[3].item() == pytest.approx(90 / 110)
    assert W.oicr_assign(boxes, scores, y)[0].tolist() == [1, 1, 0, 0, 0, 0]  # one seed misses the second instance


def test_multi_seed_assign_with_one_seed_is_oicr(device):
    g = torch.Generator().manual_seed(3)
    boxes = random_boxes(40, generator=g).to(device)
    scores = torch.rand(40, 1, generator=g).to(device)
    one = torch.ones(1, device=device)
    _assert_same(W.multi_seed_assign(boxes, scores, one, top=1 / 40), W.oicr_assign(boxes, scores, one))


@pytest.mark.parametrize("r,c,top,k", [(1, 1, 0.15, 1), (7, 3, 0.5, 4), (100, 6, 0.15, 15), (300, 20, 0.3, 90)])
def test_multi_seed_assign_matches_loops(device, r, c, top, k):
    g = torch.Generator().manual_seed(r + c)
    boxes = random_boxes(r, dtype=torch.float64, generator=g)
    scores = torch.rand(r, c, generator=g, dtype=torch.float64)
    labels = (torch.rand(c, generator=g) < 0.4).long()
    labels[c // 2] = 1
    got = W.multi_seed_assign(boxes.to(device), scores.to(device), labels.to(device), 0.5, 0.1, top, 0.2)
    want = _multi_seed_loops(boxes, scores, labels.tolist(), 0.5, 0.1, k, 0.2)  # k = ceil(top * r)
    _assert_matches_loops(got, want)


def test_multi_seed_assign_empty_and_errors(device):
    got = W.multi_seed_assign(torch.zeros(0, 4, device=device), torch.zeros(0, 2, device=device),
                              torch.tensor([1, 0], device=device))  # fmt: skip
    assert all(len(x) == 0 for x in got)
    boxes, scores = random_boxes(5, device=device), torch.rand(5, 2, device=device)
    with pytest.raises(ValueError, match="top"):
        W.multi_seed_assign(boxes, scores, torch.tensor([1, 0], device=device), top=0.0)
    with pytest.raises(ValueError, match="no positive class"):
        W.multi_seed_assign(boxes, scores, torch.tensor([0, 0], device=device))
    with pytest.raises(ValueError, match="image_labels"):
        W.multi_seed_assign(boxes, scores, torch.tensor([1], device=device))



def _cluster_seed_loops(boxes, scores, image_labels, fg_thresh, bg_thresh, top, graph_iou):
    """cluster_seed_assign written out with loops over Python lists."""
    b, s = boxes.tolist(), scores.tolist()
    r = len(b)
    seeds = []  # (row, class, weight), classes ascending
    for c in [c for c in range(len(image_labels)) if image_labels[c] == 1]:
        order = sorted(range(r), key=lambda i: (-s[i][c], i))[:top]
        links = [[j for j in order if j == i or _iou(b[i], b[j]) > graph_iou] for i in order]
        best = max(range(len(order)), key=lambda k: (len(links[k]), -k))  # most links, then the higher score
        seeds.append((order[best], c, max(s[j][c] for j in links[best])))
    out = []
    for i in range(r):
        ious = [_iou(b[i], b[row]) for row, _, _ in seeds]
        best = max(ious)
        row, c, w = seeds[ious.index(best)]
        out.append((c + 1 if best >= fg_thresh else 0, 0.0 if best < bg_thresh else w, row, best))
    return [list(x) for x in zip(*out)]


def test_cluster_seed_assign_picks_the_whole_over_a_high_scoring_part(device):
    # a ring's box, three near-copies of it, and its hole (a quarter of its area) scoring highest
    boxes = torch.tensor([[0, 0, 40, 40], [1, 0, 40, 41], [0, 1, 41, 40], [2, 2, 40, 40], [10, 10, 30, 30],
                          [60, 60, 70, 70.0]], device=device)  # fmt: skip
    scores = torch.tensor([[0.5], [0.4], [0.45], [0.3], [0.9], [0.05]], device=device)
    y = torch.ones(1, device=device)
    assert W.oicr_assign(boxes, scores, y)[2][0].item() == 4  # OICR's seed: the hole
    labels, weights, seeds, ious = W.cluster_seed_assign(boxes, scores, y, top=5 / 6)
    assert seeds.tolist() == [0] * 6  # the centre: row 0 overlaps rows 0-3 (the hole at IoU 0.25 < 0.4)
    assert labels.tolist() == [1, 1, 1, 1, 0, 0]
    assert weights[:4].tolist() == pytest.approx([0.5] * 4)  # the best score among its cluster
    assert weights[4].item() == pytest.approx(0.5) and weights[5].item() == 0.0  # IoU 0.25: kept as background
    _assert_same(W.cluster_seed_assign(boxes, scores, y, top=1 / 6), W.oicr_assign(boxes, scores, y))  # one candidate


@pytest.mark.parametrize("r,c,top,k", [(1, 1, 0.15, 1), (7, 3, 0.5, 4), (100, 6, 0.15, 15), (300, 20, 0.3, 90)])
def test_cluster_seed_assign_matches_loops(device, r, c, top, k):
    g = torch.Generator().manual_seed(r * c)
    boxes = random_boxes(r, dtype=torch.float64, generator=g)
    scores = torch.rand(r, c, generator=g, dtype=torch.float64)
    labels = (torch.rand(c, generator=g) < 0.4).long()
    labels[c // 2] = 1
    got = W.cluster_seed_assign(boxes.to(device), scores.to(device), labels.to(device), 0.5, 0.1, top, 0.4)
    want = _cluster_seed_loops(boxes, scores, labels.tolist(), 0.5, 0.1, k, 0.4)
    _assert_matches_loops(got, want)


def test_cluster_seed_assign_empty_and_errors(device):
    got = W.cluster_seed_assign(torch.zeros(0, 4, device=device), torch.zeros(0, 2, device=device),
                                torch.tensor([1, 0], device=device))  # fmt: skip
    assert all(len(x) == 0 for x in got)
    boxes, scores = random_boxes(5, device=device), torch.rand(5, 2, device=device)
    with pytest.raises(ValueError, match="top"):
        W.cluster_seed_assign(boxes, scores, torch.tensor([1, 0], device=device), top=1.5)
    with pytest.raises(ValueError, match="no positive class"):
        W.cluster_seed_assign(boxes, scores, torch.tensor([0, 0], device=device))
    nan = boxes.clone()
    nan[0, 0] = float("nan")  # a NaN box links to nothing else and overlaps no seed
    labels, weights, _, ious = W.cluster_seed_assign(nan, scores, torch.tensor([1, 1], device=device), top=1.0)
    assert (ious[0].item(), labels[0].item(), weights[0].item()) == (0.0, 0, 0.0)
