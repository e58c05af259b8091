import numpy as np
import pytest
import torch
from PIL import Image

from wsis.config import DataConfig
from wsis.data import proposals as P
from wsis.data.loader import IMAGENET_MEAN, IMAGENET_STD, InferenceDataset, TrainDataset, collate, transform
from wsis.data.synthetic import Settings, generate

pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = generate(tmp_path_factory.mktemp("ld") / "d", Settings(num_train=4, num_val=2, min_image=96, max_image=128,
                 min_object=24, max_object=60), progress=False)  # fmt: skip
    for split in ("train", "val"):
        P.compute(r, split, jobs=1, progress=False, scale=DataConfig().proposal_scale)
    return r


def test_transform_scales_flips_and_normalises():
    image = Image.fromarray(np.full((100, 200, 3), 255, np.uint8))
    boxes = np.array([[10, 20, 50, 60]], np.float32)
    x, b, scale = transform(image, boxes, shorter=50, max_size=1000, flip=False)
    assert x.shape == (3, 50, 100) and scale == 0.5
    assert b.tolist() == [[5, 10, 25, 30]]
    torch.testing.assert_close(x[:, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))
    _, bf, _ = transform(image, boxes, 50, 1000, flip=True)
    assert bf.tolist() == [[75, 10, 95, 30]]  # x mirrored in the 100-wide image
    x2, _, scale2 = transform(image, boxes, shorter=480, max_size=600, flip=False)
    assert x2.shape == (3, 300, 600) and scale2 == 3.0  # the longer side is capped


def test_train_samples_are_deterministic_per_epoch(root):
    data = TrainDataset(root, DataConfig(scales=(64, 96)), seed=3)
    a = [data[0, i] for i in range(len(data))]
    b = [data[0, i] for i in range(len(data))]
    assert all(torch.equal(x.image, y.image) and torch.equal(x.boxes, y.boxes) for x, y in zip(a, b))
    draws = set()
    for epoch in range(6):
        draws.add(tuple((min(s.image.shape[1:]), s.flipped) for s in (data[epoch, i] for i in range(len(data)))))
    assert len(draws) > 1  # epochs draw other scales and flips
    s = a[0]
    assert s.labels.shape == (6,) and s.labels.sum() >= 1 and s.boxes.shape[1] == 4
    assert (s.boxes[:, 2] <= s.image.shape[2] + 1e-3).all() and (s.boxes[:, 0] >= 0).all()


def test_train_boxes_draws_a_new_subset_of_the_proposals_each_epoch(root):
    every = TrainDataset(root, DataConfig(scales=(64,)), seed=3)
    some = TrainDataset(root, DataConfig(scales=(64,), train_boxes=5), seed=3)
    subsets = set()
    for epoch in range(4):
        full, part = every[epoch, 0], some[epoch, 0]
        assert len(full.boxes) > 5 and len(part.boxes) == 5
        assert torch.equal(part.image, full.image)  # the scale and flip draws are the same with or without it
        rows = [int((full.boxes == b).all(1).nonzero()) for b in part.boxes]
        assert rows == sorted(rows)  # a subset, in the proposals' order
        assert torch.equal(some[epoch, 0].boxes, part.boxes)  # repeatable
        subsets.add(tuple(rows))
    assert len(subsets) > 1
    many = TrainDataset(root, DataConfig(scales=(64,), train_boxes=10_000), seed=3)
    assert torch.equal(many[0, 0].boxes, every[0, 0].boxes)  # more than an image has: all of them


def test_test_dataset_gives_every_scale_and_flip(root):
    views = InferenceDataset(root, "val", DataConfig(), scales=(64, 80), flip=True)[0]
    assert [(min(v.image.shape[1:]), v.flipped) for v in views] == [(64, False), (64, True), (80, False), (80, True)]
    plain, flipped = views[0], views[1]
    assert torch.equal(plain.image.flip(2), flipped.image)


def test_collate_pads_and_builds_rois(root):
    data = TrainDataset(root, DataConfig(scales=(64, 96)), seed=0)
    batch = collate([data[0, 0], data[0, 1]])
    assert batch.images.shape[0] == 2 and batch.labels.shape == (2, 6)
    for i, s in enumerate(batch.samples):
        h, w = s.image.shape[1:]
        assert torch.equal(batch.images[i, :, :h, :w], s.image) and not batch.images[i, :, h:, w:].any()
    assert batch.rois[:, 0].unique().tolist() == [0.0, 1.0]
    assert len(batch.rois) == len(data[0, 0].boxes) + len(data[0, 1].boxes)
    keys = [[(0, 0), (0, 1)], [(0, 2), (0, 3)]]  # (epoch, index) batches, as IterationBatches gives them
    loader = torch.utils.data.DataLoader(data, batch_sampler=keys, collate_fn=collate, num_workers=2)
    assert sum(len(b.samples) for b in loader) == 4


def test_missing_proposals_are_named(tmp_path):
    r = generate(tmp_path / "d", Settings(num_train=1, num_val=0, min_image=64, max_image=64, min_object=16,
                 max_object=32), progress=False)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="syn_000000"):
        TrainDataset(r, DataConfig(), seed=0)[0, 0]
