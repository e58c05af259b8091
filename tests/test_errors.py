"""Bad input raises an error that names the argument; never a crash or silent garbage."""
import pytest
import torch

import wsis.ops as W


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: W.box_iou(torch.rand(3, 5), torch.rand(2, 4)), ValueError, "boxes1"),
        (lambda: W.box_iou(torch.rand(3, 4), torch.rand(2, 4, 4)), ValueError, "boxes2"),
        (lambda: W.box_iou(torch.rand(3, 4), torch.rand(2, 4).double()), TypeError, "boxes2"),
        (lambda: W.box_iou(torch.ones(3, 4, dtype=torch.int64), torch.rand(2, 4)), TypeError, "boxes1"),
        (lambda: W.box_iou([[0, 0, 1, 1]], torch.rand(2, 4)), TypeError, "boxes1"),
        (lambda: W.nms(torch.rand(3, 4), torch.rand(4), 0.5), ValueError, "scores"),
        (lambda: W.nms(torch.rand(3, 4), torch.rand(3), 1.5), ValueError, "iou_threshold"),
        (lambda: W.batched_nms(torch.rand(3, 4), torch.rand(3), torch.rand(3), 0.5), TypeError, "idxs"),
        (lambda: W.batched_nms(torch.rand(3, 4), torch.rand(3), torch.zeros(2, dtype=torch.long), 0.5), ValueError, "idxs"),
        (lambda: W.multiclass_nms(torch.rand(3, 2, 4), torch.rand(3, 5), 0.5), ValueError, "boxes"),
        (lambda: W.multiclass_nms(torch.rand(3, 4), torch.rand(3, 5), 0.5, max_per_class=-2), ValueError, "max_per_class"),
        (lambda: W.roi_pool(torch.rand(2, 3, 4), torch.zeros(1, 5), 2), ValueError, "input"),
        (lambda: W.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(1, 4), 2), ValueError, "boxes"),
        (lambda: W.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(1, 5), 0), ValueError, "output_size"),
        (lambda: W.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(1, 5), 2, -1.0), ValueError, "spatial_scale"),
        (lambda: W.roi_pool(torch.rand(2, 3, 4, 4), torch.tensor([[2.0, 0, 0, 1, 1]]), 2), RuntimeError, r"rois\[:, 0\]"),
        (lambda: W.roi_pool(torch.rand(2, 3, 4, 4), torch.tensor([[-1.0, 0, 0, 1, 1]]), 2), RuntimeError, r"rois\[:, 0\]"),
        (lambda: W.oicr_assign(torch.rand(3, 4), torch.rand(3, 2), torch.ones(3)), ValueError, "image_labels"),
        (lambda: W.oicr_assign(torch.rand(3, 4), torch.rand(2, 2), torch.ones(2)), ValueError, "scores"),
        (lambda: W.oicr_assign(torch.rand(3, 4), torch.rand(3, 2), torch.ones(2), 0.1, 0.5), ValueError, "bg_thresh"),
        (lambda: W.oicr_assign(torch.rand(3, 4), torch.rand(3, 2), torch.zeros(2)), RuntimeError, "image_labels"),
        (lambda: W.weighted_gap(torch.rand(2, 3, 4), 1.0), ValueError, "x"),
        (lambda: W.weighted_gap(torch.rand(2, 3, 4, 4), 0.0), ValueError, "sigma"),
        (lambda: W.weighted_gap(torch.rand(2, 3, 0, 4), 1.0), ValueError, "x"),
        (lambda: W.cam_pseudo_masks(torch.rand(2, 3, 4, 4)), ValueError, "cams"),
        (lambda: W.cam_pseudo_masks(torch.rand(0, 3, 4, 4, 4)), ValueError, "cams"),
        (lambda: W.set_backend("cudnn"), ValueError, "backend"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to mix devices")
def test_mixed_devices_name_both_arguments():
    with pytest.raises(ValueError, match="boxes2"):
        W.box_iou(torch.rand(3, 4), torch.rand(2, 4, device="cuda"))
    with pytest.raises(ValueError, match="boxes"):
        W.roi_pool(torch.rand(1, 3, 4, 4, device="cuda"), torch.zeros(1, 5), 2)


def test_direct_op_calls_are_checked_too():
    with pytest.raises(RuntimeError, match="boxes"):
        torch.ops.wsis.nms(torch.rand(3, 5), torch.rand(3), 0.5)
    with pytest.raises(RuntimeError, match="rois"):
        torch.ops.wsis.roi_pool(torch.rand(1, 3, 4, 4), torch.tensor([[5.0, 0, 0, 1, 1]]), 1.0, 2, 2)
