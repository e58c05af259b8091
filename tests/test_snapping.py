"""Pseudo masks snapped to image segments: sampling a roi's segment ids, the best-overlap rule,
graph segments of a whole image, their cache and their resizing with the training image."""
import numpy as np
import pytest
import torch

from wsis.data import proposals
from wsis.data import segments as segments_lib
from wsis.data.synthetic import Settings, generate
from wsis.data.loader import TrainDataset, resize_ids
from wsis.config import DataConfig
from wsis.model.snapping import roi_segment_ids, snap, snap_masks


def test_roi_segment_ids_sample_the_cell_centres():
    segments = torch.arange(20 * 30).reshape(1, 20, 30)  # id = y * 30 + x
    ids = roi_segment_ids(segments, torch.tensor([10.0, 4.0, 18.0, 8.0]), 4)  # cells 2 px wide, 1 px tall
    assert ids.shape == (1, 4, 4)
    assert ids[0].tolist() == [[y * 30 + x for x in (11, 13, 15, 17)] for y in (4, 5, 6, 7)]
    far = roi_segment_ids(segments, torch.tensor([-50.0, -50.0, 100.0, 100.0]), 3)  # clamped to the image
    assert far.min() >= 0 and far.max() < 600


def test_snap_takes_the_segment_of_highest_iou_at_any_granularity():
    coarse = torch.zeros(6, 6, dtype=torch.int64)
    coarse[:, 3:] = 1  # two halves
    fine = torch.full((6, 6), 2)
    fine[1:5, 1:5] = 3  # a centred 4x4 square
    ids = torch.stack([coarse, fine])
    blob = torch.zeros(6, 6, dtype=torch.bool)
    blob[1:5, 1:4] = True  # 12 cells: IoU 12/16 with the square, 9/21 with the left half
    square = fine == 3
    out, taken = snap(blob, ids)
    assert torch.equal(out, square) and taken.tolist() == [3]
    left = torch.zeros(6, 6, dtype=torch.bool)
    left[:, :3] = True
    assert torch.equal(snap(left, ids)[0], left)  # the left half is a segment itself
    empty = torch.zeros(6, 6, dtype=torch.bool)
    out, taken = snap(empty, ids)
    assert torch.equal(out, empty) and taken is None


def test_snap_takes_the_covered_finest_segments_where_no_segment_matches_well():
    # finest granularity first: four 3x3 quarters; the coarser one splits the grid into rows 0-1 and 2-5
    fine = torch.tensor([[0] * 3 + [1] * 3] * 3 + [[2] * 3 + [3] * 3] * 3)
    coarse = torch.full((6, 6), 4)
    coarse[2:] = 5
    ids = torch.stack([fine, coarse])
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:, :3] = True  # quarters 0 and 2 whole ...
    mask[0:2, 3] = True  # ... and 2 of quarter 1's 9 cells: 20 cells
    # IoU 9/20 with quarter 0 (the first of a tie with 2), 8/24 with rows 0-1, 12/32 with rows 2-5
    out, taken = snap(mask, ids, superpixel_iou=0.6, superpixel_cover=0.6)
    assert sorted(taken.tolist()) == [0, 2] and torch.equal(out, (fine == 0) | (fine == 2))
    out, taken = snap(mask, ids)  # off: the best segment
    assert taken.tolist() == [0] and torch.equal(out, fine == 0)
    assert snap(mask, ids, superpixel_iou=0.4)[1].tolist() == [0]  # 0.45 matches well enough
    assert snap(mask, ids, superpixel_iou=0.6, superpixel_cover=0.2)[1].tolist() == [0, 1, 2]  # 2/9 of quarter 1


def test_the_box_prior_takes_the_segment_whose_image_box_fits_the_roi():
    # a 20x20 image: a ring (rows/cols 2-17, hole 6-13) with its hole as its own segment, at one
    # granularity, and the same with the hole merged into the ring at a coarser one
    image = torch.zeros(2, 20, 20, dtype=torch.int32)
    image[0, 2:18, 2:18], image[0, 6:14, 6:14] = 1, 2
    image[1] = 3
    image[1, 2:18, 2:18] = 4
    roi = torch.tensor([[0.0, 2.0, 2.0, 18.0, 18.0]])  # fits the ring; the grid's cells are 4 px
    blob = torch.zeros(1, 4, 4)
    blob[0, 1:3, 1:3] = 1  # the hole's 4 cells: IoU 1 with the hole, 4/16 with ring + hole
    out, _ = snap_masks([image], roi, blob)
    assert torch.equal(out[0].bool(), blob[0].bool())  # by overlap: the hole
    out, _ = snap_masks([image], roi, blob, box_weight=2.0)  # hole 1 + 2 x 0.25, ring + hole 0.25 + 2 x 1
    assert out[0].bool().all()  # the ring and its hole: the whole grid (the ring alone does not overlap the mask)
    assert torch.equal(snap_masks([image], roi, blob, box_weight=0.5)[0], blob)  # 1.125 against 0.75


def test_segment_ids_split_flat_regions_with_ids_unique_across_granularities():
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, 30:, 0] = 255  # red right half, black left half
    seg = torch.from_numpy(segments_lib.segment_ids(rgb, ks=(100, 1000)).astype(np.int64))
    assert seg.shape == (2, 40, 60)
    for g in range(2):
        assert seg[g, :, :30].unique().numel() == 1 and seg[g, :, 30:].unique().numel() == 1
        assert seg[g, 0, 0] != seg[g, 0, 59]
    assert not set(seg[0].unique().tolist()) & set(seg[1].unique().tolist())


def test_resize_ids_samples_cell_centres_then_flips():
    ids = np.arange(6, dtype=np.uint16).reshape(1, 2, 3)  # [[0 1 2] [3 4 5]]
    assert resize_ids(ids, 4, 6, False)[0].tolist() == [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    assert resize_ids(ids, 2, 3, True)[0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert resize_ids(ids, 1, 2, False).dtype == torch.int32


def test_training_samples_carry_cached_segments_resized_and_flipped(tmp_path):
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    root = generate(tmp_path / "d", Settings(num_train=2, num_val=1, min_image=96, max_image=128, min_object=24,
                                             max_object=60), progress=False)  # fmt: skip
    proposals.compute(root, "train", jobs=1, progress=False, scale=DataConfig().proposal_scale)
    with pytest.raises(FileNotFoundError, match="no graph segments"):
        TrainDataset(root, DataConfig(scales=(64,), flip=False), seed=0, segments=True)[0, 0]
    segments_lib.compute(root, "train", jobs=1, progress=False)
    cached = segments_lib.load(root, TrainDataset(root, DataConfig(), seed=0).data.image_ids[0])
    assert cached.dtype == np.uint16 and cached.shape[0] == len(segments_lib.GRAPH_KS)
    for flip in (False, True):
        data = TrainDataset(root, DataConfig(scales=(64,), flip=flip), seed=0, segments=True)
        for epoch in range(4):
            s = data[epoch, 0]
            assert s.segments.shape[1:] == s.image.shape[1:]
            want = resize_ids(cached, *s.image.shape[1:], s.flipped)
            assert torch.equal(s.segments, want)
    assert TrainDataset(root, DataConfig(), seed=0)[0, 0].segments is None
