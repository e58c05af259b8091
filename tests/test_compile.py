"""torch.compile traces through the ops (fake kernels and autograd registrations) in one graph."""
import torch
from random_inputs import random_boxes, random_rois

import wsis.ops as W


def _model(x, rois, boxes, scores, labels):
    pooled = W.roi_pool(x, rois, 3, 0.5)
    cams = W.weighted_gap(pooled, 1.5)
    iou = W.box_iou(boxes, boxes)
    targets, weights, _, _ = W.oicr_assign(boxes, scores, labels)
    mean, _ = W.cam_pseudo_masks(pooled.unsqueeze(0))
    return cams.sum() + iou.nan_to_num().sum() + (weights * targets).sum() + mean.sum()


def test_compile_fullgraph_forward_and_backward(device):
    x = torch.randn(2, 4, 8, 8, device=device, requires_grad=True)
    rois = random_rois(6, 2, size=16.0).to(device)
    boxes = random_boxes(6, device=device)
    scores = torch.rand(6, 3, device=device)
    labels = torch.tensor([1.0, 0.0, 1.0], device=device)
    eager = _model(x, rois, boxes, scores, labels)
    (g_eager,) = torch.autograd.grad(eager, x)
    compiled = torch.compile(_model, backend="aot_eager", fullgraph=True)
    out = compiled(x, rois, boxes, scores, labels)
    (g,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(g, g_eager)


def test_compile_nms_with_dynamic_output(device):
    boxes, scores = random_boxes(40, device=device), torch.rand(40, device=device)
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        keep = torch.compile(lambda b, s: W.nms(b, s, 0.5), backend="aot_eager", fullgraph=True)(boxes, scores)
    assert torch.equal(keep, W.nms(boxes, scores, 0.5))
