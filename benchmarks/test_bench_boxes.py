import pytest
import torch
from bench_inputs import proposals

import wsis.ops as W
from wsis.ops import reference as ref


@pytest.mark.parametrize("impl", ["wsis", "reference", "torchvision"])
def test_box_iou(run, device, tv, impl, benchmark):
    benchmark.group = f"box_iou 2000x2000 [{device}]"
    fn = {"wsis": W.box_iou, "reference": ref.box_iou, "torchvision": tv.ops.box_iou}[impl]
    run(fn, proposals(2000, device=device, seed=1), proposals(2000, device=device, seed=2))


@pytest.mark.parametrize("n", [2000, 5000])
@pytest.mark.parametrize("impl", ["wsis", "reference", "torchvision"])
def test_nms(run, device, tv, n, impl, benchmark):
    benchmark.group = f"nms {n} boxes [{device}]"
    fn = {"wsis": W.nms, "reference": ref.nms, "torchvision": tv.ops.nms}[impl]
    boxes, scores = proposals(n, device=device), torch.rand(n, device=device)
    run(fn, boxes, scores, 0.5, rounds=1 if impl == "reference" else None)


def torchvision_per_class_nms(tv, boxes, scores, iou_threshold, score_threshold):
    """The multiclass_nms baseline: one torchvision batched_nms-equivalent call per class."""
    flat = []
    C = scores.shape[1]
    for c in range(C):
        rows = torch.nonzero(scores[:, c] > score_threshold).flatten()
        flat.append(rows[tv.ops.nms(boxes[rows], scores[rows, c], iou_threshold)] * C + c)
    flat = torch.cat(flat)
    flat = flat[torch.sort(scores.flatten()[flat], descending=True, stable=True).indices]
    return flat // C, flat % C


@pytest.mark.parametrize("impl", ["wsis", "reference", "torchvision"])
def test_multiclass_nms(run, device, tv, impl, benchmark):
    benchmark.group = f"multiclass_nms 2000 boxes x 20 classes [{device}]"
    boxes, scores = proposals(2000, device=device), torch.rand(2000, 20, device=device)
    if impl == "wsis":
        run(W.multiclass_nms, boxes, scores, 0.3, 0.0)
    elif impl == "reference":
        run(ref.multiclass_nms, boxes, scores, 0.3, 0.0, rounds=1)
    else:
        run(lambda: torchvision_per_class_nms(tv, boxes, scores, 0.3, 0.0))


@pytest.mark.parametrize("impl", ["wsis", "torchvision"])
def test_batched_nms(run, device, tv, impl, benchmark):
    benchmark.group = f"batched_nms 5000 boxes, 20 ids [{device}]"
    fn = W.batched_nms if impl == "wsis" else tv.ops.batched_nms
    g = torch.Generator().manual_seed(0)
    idxs = torch.randint(0, 20, (5000,), generator=g).to(device)
    run(fn, proposals(5000, device=device), torch.rand(5000, device=device), idxs, 0.5)
