"""Fixtures shared by tests/ and benchmarks/: the devices to run on, and torchvision when present."""
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    # Without a GPU the Triton kernels run in Triton's interpreter. Triton reads this when it is
    # first imported, so it is set here, before any test module imports it.
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine"))]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def tv():
    return pytest.importorskip("torchvision", reason="torchvision is not installed (lean CPU torch)")
