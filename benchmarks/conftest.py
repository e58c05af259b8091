"""Kernel benchmarks at the paper's sizes: `pytest benchmarks` (compare with --benchmark-group-by=group).

Each benchmark group holds our op, its pure-PyTorch reference and, where one exists, the
torchvision op; RESULTS.md records the ratios. On CUDA every timed call ends with a synchronize.
"""
import pytest
import torch


@pytest.fixture
def run(benchmark, device):
    """benchmark(fn) that waits for the GPU inside the timed region."""

    def timed(fn, *args, rounds=None):
        def call():
            out = fn(*args)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        if rounds is not None:
            return benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
        return benchmark(call)

    return timed
