"""Pseudo masks snapped to image segments: sampling a roi's segment ids, the best-overlap rule,
graph segments of a whole image."""
import pytest
import torch

from wsis.model.snapping import image_segments, roi_segment_ids, snap


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
    assert torch.equal(snap(blob, ids), square)
    left = torch.zeros(6, 6, dtype=torch.bool)
    left[:, :3] = True
    assert torch.equal(snap(left, ids), left)  # the left half is a segment itself
    empty = torch.zeros(6, 6, dtype=torch.bool)
    assert torch.equal(snap(empty, ids), empty)


def test_image_segments_split_flat_regions_with_ids_unique_across_granularities():
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    rgb = torch.zeros(3, 40, 60)
    rgb[0, :, 30:] = 1.0  # red right half, black left half
    seg = image_segments(rgb, ks=(100, 1000))
    assert seg.shape == (2, 40, 60) and seg.dtype == torch.int64
    for g in range(2):
        assert seg[g, :, :30].unique().numel() == 1 and seg[g, :, 30:].unique().numel() == 1
        assert seg[g, 0, 0] != seg[g, 0, 59]
    assert not set(seg[0].unique().tolist()) & set(seg[1].unique().tolist())
