"""Selective Search on one image of the synthetic default, at the full size and at the CPU default's
`data.proposal_scale`: the cost of the proposals that a fresh run computes for its 950 images."""
import pytest

from wsis.config import DataConfig

cv2 = pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from wsis.data import VOCDataset
    from wsis.data.synthetic import Settings, generate

    root = generate(tmp_path_factory.mktemp("ss") / "d", Settings(num_train=2, num_val=0), progress=False)
    data = VOCDataset(root, "train")
    return data.image_path(data.image_ids[0])


@pytest.mark.parametrize("scale", [1.0, DataConfig().proposal_scale])
def test_selective_search_one_image(image, scale, benchmark):
    from wsis.data import proposals

    benchmark.group = "Selective Search fast, one synthetic image (192-288 px), one thread"
    cv2.setNumThreads(1)  # as in the pool that computes a split
    boxes = benchmark.pedantic(proposals.selective_search, (image, "fast", scale), rounds=5, iterations=1,
                               warmup_rounds=1)  # fmt: skip
    assert len(boxes) > 0
