"""The Triton kernels against the references: on CUDA, or on the CPU under TRITON_INTERPRET=1."""
import functools
import os

import pytest
import torch
from random_inputs import random_boxes, spoiled

pytest.importorskip("triton", reason="triton is not installed (lean CPU torch)")
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs a CUDA device or TRITON_INTERPRET=1 (set by the root conftest.py)", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings(
    # 0/0 in masked lanes and for empty boxes (NaN IoU, as torchvision), which NumPy reports
    "ignore:invalid value encountered in divide:RuntimeWarning"
)

import wsis.ops as W  # noqa: E402
from wsis.ops import reference as ref  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def triton_backend():
    with W.backend("triton"):
        yield


@pytest.mark.parametrize("n,m", [(0, 3), (1, 1), (37, 70), (130, 65)])
def test_box_iou(n, m):
    a, b = random_boxes(n, device=DEVICE), random_boxes(m, device=DEVICE)
    torch.testing.assert_close(W.box_iou(a, b), ref.box_iou(a, b))
    ab, bb = a[: n // 2 * 2].reshape(-1, 2, 4).transpose(0, 1), b[: m // 2 * 2].reshape(-1, 2, 4).transpose(0, 1)
    torch.testing.assert_close(W.box_iou(ab, bb), ref.box_iou(ab, bb))


@pytest.mark.parametrize("shape", [(0, 2, 5, 5), (3, 4, 7, 7), (2, 3, 28, 28), (2, 2, 3, 6)])
def test_weighted_gap_and_gradient(shape):
    x = torch.randn(shape, device=DEVICE, requires_grad=True)
    torch.testing.assert_close(W.weighted_gap(x, 2.0), ref.weighted_gap(x, 2.0))
    g = torch.randn(shape[:2], device=DEVICE)
    got = torch.autograd.grad(W.weighted_gap(x, 2.0), x, g)[0]
    want = torch.autograd.grad(ref.weighted_gap(x, 2.0), x, g)[0]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("shape", [(1, 1, 1, 2, 2), (3, 4, 5, 28, 28), (2, 2, 3, 5, 3)])
def test_cam_pseudo_masks(shape):
    cams = torch.randn(shape, device=DEVICE)
    cams[0, 0, 0] = 3.0  # a constant map
    mean, mask = W.cam_pseudo_masks(cams, 0.4)
    torch.testing.assert_close(mean, ref.cam_pseudo_masks(cams, 0.4)[0])
    assert torch.equal(mask, mean > 0.4)


@pytest.mark.parametrize("r,c", [(1, 1), (7, 3), (300, 20), (1500, 20)])
def test_oicr_assign(r, c):
    g = torch.Generator().manual_seed(r)
    boxes = random_boxes(r, generator=g).to(DEVICE)
    boxes[: r // 10] = 0
    scores = torch.rand(r, c, generator=g).to(DEVICE)
    scores[:, 0] = 0.5  # ties
    labels = (torch.rand(c, generator=g) < 0.3).float().to(DEVICE)
    labels[0] = 1
    got, want = W.oicr_assign(boxes, scores, labels), ref.oicr_assign(boxes, scores, labels)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_oicr_assign_no_positive_class():
    with pytest.raises(RuntimeError, match="image_labels"):
        W.oicr_assign(random_boxes(3, device=DEVICE), torch.rand(3, 2, device=DEVICE), torch.zeros(2, device=DEVICE))


def test_backend_switch_restores():
    assert W.get_backend() == "triton"
    with W.backend("native"):
        assert W.get_backend() == "native"
    assert W.get_backend() == "triton"


def test_opcheck_triton_ops():
    # Triton's interpreter runs kernels even on fake tensors, so there only the schema and
    # autograd checks apply; on a GPU opcheck runs in full (fake tensors, AOT dispatch too).
    utils = None if torch.cuda.is_available() else ("test_schema", "test_autograd_registration")
    opcheck = functools.partial(torch.library.opcheck, **({} if utils is None else {"test_utils": utils}))
    a, b = random_boxes(9, device=DEVICE), random_boxes(5, device=DEVICE)
    opcheck(torch.ops.wsis_triton.box_iou.default, (a, b))
    x = torch.randn(2, 3, 5, 5, device=DEVICE, requires_grad=True)
    opcheck(torch.ops.wsis_triton.weighted_gap.default, (x, 1.5))
    opcheck(torch.ops.wsis_triton.cam_pseudo_masks.default, (torch.randn(2, 3, 2, 4, 4, device=DEVICE), 0.4))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN in, NaN arithmetic: the point of the test
def test_box_iou_and_oicr_assign_on_nan_and_infinite_boxes():
    """The Triton kernels give the same defined results as the compiled ones (test_non_finite.py)."""
    boxes, scores = spoiled(50, DEVICE, seed=3)
    torch.testing.assert_close(W.box_iou(boxes, boxes), ref.box_iou(boxes, boxes), equal_nan=True)
    table = torch.stack([scores.nan_to_num(0.5).clamp(0, 1), scores.roll(3).nan_to_num(0.1).clamp(0, 1)], 1)
    labels = torch.tensor([1.0, 1.0], device=DEVICE)
    for a, b in zip(W.oicr_assign(boxes, table, labels), ref.oicr_assign(boxes, table, labels)):
        torch.testing.assert_close(a, b, equal_nan=True)
