"""The classifier probe (benchmarks/probe.py) as a benchmark: seconds to train it, and the val
image-level AP it reaches, recorded in the benchmark's extra_info. Small sizes, so that CI runs it
once in seconds; `python benchmarks/probe.py` runs the full-size probe."""
import pytest
from probe import probe, synthetic

pytest.importorskip("timm", reason="timm is not installed (the lean CPU-only torch): no model to time")


@pytest.fixture(scope="module")
def probe_root(tmp_path_factory):
    return synthetic(tmp_path_factory.mktemp("probe") / "data", num_train=64, num_val=48)


@pytest.mark.parametrize("weights", ["imagenet", "none"])
def test_probe_efficientnet_lite0(benchmark, probe_root, weights):
    benchmark.group = "classifier probe, 60 iterations [cpu]"
    history = benchmark.pedantic(probe, args=(probe_root, "efficientnet_lite0", weights, 60), kwargs={"eval_every": 60},
                                 rounds=1, iterations=1)  # fmt: skip
    benchmark.extra_info["val_AP"] = history[-1]["val_AP"]
    assert 0 < history[-1]["val_AP"] <= 100
