"""Post-processing: MCG .mat proposals, OpenCV graph segments, best-overlap replacement, the box prior."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from wsis.data.segments import cache_path, graph_labels, label_regions, region_boxes, segment_ids
from wsis.evaluation.metrics import box_iou, mask_iou
from wsis.evaluation.postprocess import load_mcg, make_postprocess, snap, superpixel_vote
from wsis.inference import Detections


def test_mcg_superpixels_and_labels_become_masks(tmp_path):
    sp = np.array([[1, 1, 2], [3, 3, 2]], np.uint16)
    labels = np.empty((2, 1), dtype=object)
    labels[0, 0], labels[1, 0] = np.array([1, 2]), np.array([3])
    savemat(tmp_path / "a.mat", {"superpixels": sp, "labels": labels})
    masks = load_mcg(tmp_path / "a.mat")
    assert masks.tolist() == [[[True, True, True], [False, False, True]], [[False, False, False], [True, True, False]]]
    savemat(tmp_path / "b.mat", {"masks": np.dstack([sp == 1, sp == 2])})
    assert load_mcg(tmp_path / "b.mat").shape == (2, 2, 3)
    savemat(tmp_path / "c.mat", {"boxes": np.zeros((1, 4))})
    with pytest.raises(ValueError, match="expected 'masks' or 'superpixels'"):
        load_mcg(tmp_path / "c.mat")
    with pytest.raises(FileNotFoundError, match="MCG proposals not found"):
        load_mcg(tmp_path / "absent.mat")


def test_snap_replaces_each_mask_by_its_best_segment():
    segments = np.zeros((3, 4, 4), bool)
    segments[0, :2], segments[1, 2:], segments[2, :, :2] = True, True, True
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, 0, :3] = True  # mostly segment 0
    masks[1, 3, 1:] = True  # mostly segment 1
    out = snap(masks, segments)
    assert torch.equal(out[0], torch.from_numpy(segments[0])) and torch.equal(out[1], torch.from_numpy(segments[1]))
    assert not out[2].any()  # no overlap with anything: kept (empty)


def test_superpixel_vote_keeps_the_superpixels_a_mask_mostly_covers():
    superpixels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2, :3] = True  # all of 0, half of 1
    masks[1, 1:, :] = True  # half of 0 and 1, all of 2 and 3
    out = superpixel_vote(masks, superpixels, 0.6)
    assert torch.equal(out[0], torch.from_numpy(superpixels == 0))
    assert torch.equal(out[1], torch.from_numpy(superpixels >= 2))
    assert not out[2].any()  # an empty mask covers nothing
    assert torch.equal(superpixel_vote(masks, superpixels, 0.5)[0], torch.from_numpy(superpixels <= 1))  # the edge: >= cover
    assert superpixel_vote(masks[:0], superpixels, 0.6).shape == (0, 4, 4)


def test_snap_takes_the_superpixels_where_no_segment_holds_the_mask():
    # an 8x8 object cut by clutter into four 4x4 superpixels; the segments are the pieces and a strip
    superpixels = np.zeros((8, 12), np.int64)
    superpixels[:4, 4:8], superpixels[4:, :4], superpixels[4:, 4:8], superpixels[:, 8:] = 1, 2, 3, 4
    segments = np.stack([superpixels == i for i in range(5)] + [np.pad(np.ones((8, 2), bool), ((0, 0), (10, 0)))])
    masks = torch.zeros(3, 8, 12, dtype=torch.bool)
    masks[0, :, :7] = True  # the object, a little short: its best segment, a piece, has IoU 16/56
    masks[1, :, 10:] = True  # the strip: a segment holds it whole (IoU 1)
    masks[2, 0, 0] = True  # one pixel of piece 0: IoU 1/16, and it covers no superpixel
    out = snap(masks, segments, superpixels, superpixel_iou=0.4, superpixel_cover=0.6)
    assert torch.equal(out[0], torch.from_numpy(superpixels <= 3))  # the four pieces
    assert torch.equal(out[1], torch.from_numpy(segments[5]))
    assert torch.equal(out[2], torch.from_numpy(segments[0]))  # no superpixel: the best segment stays
    best = snap(masks, segments)  # no superpixels: the best segment of each
    assert torch.equal(best[0], torch.from_numpy(segments[0])) and torch.equal(best[1:], out[1:])
    assert torch.equal(snap(masks, segments, superpixels, superpixel_iou=0.0), best)


def ring_and_hole():
    """A 10x10 ring (a 6x6 hole) and its hole as two segments, the rest of the 12x12 image a third."""
    ring = np.zeros((12, 12), bool)
    ring[1:11, 1:11] = True
    ring[3:9, 3:9] = False
    hole = np.zeros((12, 12), bool)
    hole[3:9, 3:9] = True
    return ring, hole, np.stack([ring, hole, ~(ring | hole)])


def test_the_box_prior_takes_the_segment_that_fits_the_detection_box():
    ring, hole, segments = ring_and_hole()
    blob = np.zeros((12, 12), bool)
    blob[2:10, 2:10] = True  # a central mask: IoU 36/64 with the hole, 28/100 with the ring
    boxes = np.array([[1.0, 1.0, 11.0, 11.0]])  # the detection fits the ring
    fit = box_iou(boxes, np.stack([region_boxes(s.astype(np.int64))[1] for s in segments]))
    masks = torch.from_numpy(blob[None])
    assert torch.equal(snap(masks, segments)[0], torch.from_numpy(hole))  # best overlap: the hole
    assert torch.equal(snap(masks, segments, box_fit=fit, box_weight=0.5)[0], torch.from_numpy(ring))
    # 0.5625 + 0.1 * 0.36 against 0.28 + 0.1: a small weight leaves the overlap in charge
    assert torch.equal(snap(masks, segments, box_fit=fit, box_weight=0.1)[0], torch.from_numpy(hole))
    # a segment that does not overlap the mask is never taken, however well its box fits
    far = np.zeros((12, 12), bool)
    far[0, 0] = far[11, 11] = True
    far_fit = box_iou(boxes, np.array([[0.0, 0.0, 12.0, 12.0]]))
    hole_and_far, fits = np.stack([hole, far]), np.concatenate([fit[:, 1:2], far_fit], 1)
    out = snap(masks, hole_and_far, box_fit=fits, box_weight=5)
    assert torch.equal(out[0], torch.from_numpy(hole))


def test_label_segments_equal_the_dense_regions_to_the_last_bit():
    """Graph segments of a noisy 'photo' at three granularities, masks of every size (a tie between
    copies of one region at two granularities included): the same IoU bits, the same snapped masks
    (with the box prior and superpixels), and no dense regions on the way."""
    from wsis.evaluation.postprocess import LabelSegments

    rng = np.random.default_rng(0)
    image = (np.kron(rng.integers(0, 255, (12, 16, 3)), np.ones((10, 10, 1))) + rng.normal(0, 12, (120, 160, 3)))
    labels = [graph_labels(image.clip(0, 255).astype(np.uint8), k) for k in (50, 300, 1000)]
    labels.append(labels[1].copy())  # every region twice: equal IoUs, the first must win in both paths
    dense = np.concatenate([label_regions(x) for x in labels])
    lazy = LabelSegments(labels)
    assert len(lazy) == len(dense) and np.array_equal(lazy[np.arange(len(dense))], dense)
    masks = np.zeros((6, 120, 160), bool)
    for m in masks[:5]:
        y, x = rng.integers(0, 100, 2)
        m[y:y + rng.integers(2, 60), x:x + rng.integers(2, 90)] = True
    masks[5] = dense[7]  # a region itself
    assert np.array_equal(lazy.iou(masks), mask_iou(masks, dense))
    boxes = torch.tensor([[0.0, 0, 60, 50], [30, 20, 150, 110], [10, 10, 20, 20], [0, 0, 160, 120], [40, 40, 80, 90],
                          [5, 5, 60, 60]])  # fmt: skip
    fit = box_iou(boxes.numpy(), np.concatenate([region_boxes(x) for x in labels]))
    m = torch.from_numpy(masks)
    for kw in ({}, {"box_fit": fit, "box_weight": 0.5}):
        assert torch.equal(snap(m, lazy, labels[0], 0.4, 0.6, **kw), snap(m, dense, labels[0], 0.4, 0.6, **kw))
    assert snap(m[:0], lazy).shape == (0, 120, 160) and lazy[np.zeros(0, int)].shape == (0, 120, 160)


def test_region_boxes_bound_each_id_of_a_label_map_or_a_stack():
    labels = np.zeros((2, 5, 6), np.int64)
    labels[0, 1:3, 2:5] = 1
    labels[1] = 3
    labels[1, 4, 0] = 4
    assert region_boxes(labels).tolist() == [[0, 0, 6, 5], [2, 1, 5, 3], [0, 0, 0, 0], [0, 0, 6, 5], [0, 4, 1, 5]]
    assert region_boxes(labels[0]).tolist() == [[0, 0, 6, 5], [2, 1, 5, 3]]


def test_postprocess_segments_reads_the_cached_segments_of_an_image_of_their_size(tmp_path):
    """The segments that training cached under the data root are those computed from the image, and
    `segments_root` makes the post-processing read them; a cache of another size is passed over."""
    ring, hole, _ = ring_and_hole()
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[ring], rgb[hole] = (220, 30, 30), (30, 30, 220)
    rgb = np.kron(rgb, np.ones((8, 8, 1), np.uint8))
    Image.fromarray(rgb).save(tmp_path / "a.png")
    det = Detections(torch.tensor([[8.0, 8.0, 88.0, 88.0]]), torch.tensor([1]), torch.tensor([0.9]),
                     torch.from_numpy(np.kron(ring | hole, np.ones((8, 8), bool))[None]))  # fmt: skip
    path = lambda i: tmp_path / f"{i}.png"  # noqa: E731
    cache = cache_path(tmp_path, "a")
    cache.parent.mkdir(parents=True)

    def cached(ids):
        np.savez_compressed(cache, array=ids)
        return make_postprocess("segments", path, segments_root=tmp_path)("a", det)

    computed = make_postprocess("segments", path)("a", det)
    assert torch.equal(cached(segment_ids(rgb)), computed)
    halves = np.zeros((3, 96, 96), np.uint16)
    halves[:, :, 40:] = 1  # two segments; the mask overlaps the right one more
    halves += np.arange(3, dtype=np.uint16)[:, None, None] * 2  # segment_ids' offsets across granularities
    right = cached(halves)
    assert right.shape == (1, 96, 96) and right[0, :, 40:].all() and not right[0, :, :40].any()  # the cache's
    assert torch.equal(cached(halves[:, :95]), computed)  # not this image's: computed again


def test_postprocess_segments_uses_the_box_prior_of_its_weight(tmp_path):
    # an image of a ring around a hole of another colour: the central mask snaps to the hole by
    # overlap, to the ring with the box prior
    ring, hole, _ = ring_and_hole()
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[ring], rgb[hole] = (220, 30, 30), (30, 30, 220)
    Image.fromarray(np.kron(rgb, np.ones((8, 8, 1), np.uint8))).save(tmp_path / "a.png")  # 96x96, segments of >= 50 px
    big = lambda m: np.kron(m, np.ones((8, 8), bool))  # noqa: E731
    blob = np.zeros((12, 12), bool)
    blob[2:10, 2:10] = True
    box = torch.tensor([[8.0, 8.0, 88.0, 88.0]])  # the ring's, at 8 px a cell
    det = Detections(box, torch.tensor([1]), torch.tensor([0.9]), torch.from_numpy(big(blob)[None]))
    plain = make_postprocess("segments", lambda i: tmp_path / f"{i}.png")("a", det)
    boxed = make_postprocess("segments", lambda i: tmp_path / f"{i}.png", box_weight=0.5)("a", det)
    # (the graph segments leave thin strips along the colour edges)
    truth = np.stack([big(hole), big(ring)])
    assert mask_iou(plain.numpy(), truth)[0].round(1).tolist() == [0.8, 0.0]
    assert mask_iou(boxed.numpy(), truth)[0].round(1).tolist() == [0.0, 0.8]


def test_superpixel_settings_must_lie_in_range():
    from wsis import config as config_lib

    with pytest.raises(ValueError, match=r"test\.segment_box_weight must be >= 0"):
        config_lib.load(None, ["test.segment_box_weight=-0.5"])
    for bad in ("test.superpixel_iou=-0.1", "test.superpixel_iou=1.5", "test.superpixel_cover=0"):
        with pytest.raises(ValueError, match=r"test\.superpixel_iou must be in \[0, 1\] and test\.superpixel_cover"):
            config_lib.load(None, [bad])


def test_graph_segments_cover_the_image_at_each_granularity():
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    image = np.zeros((32, 40, 3), np.uint8)
    image[8:24, 10:30] = (200, 30, 30)
    one = label_regions(graph_labels(image, 300, min_size=20))
    assert one.shape[1:] == (32, 40) and (one.sum(0) == 1).all()  # one granularity partitions the image
    segs = np.concatenate([label_regions(graph_labels(image, k, min_size=20)) for k in (100, 1000)])
    assert len(segs) >= 2 and (segs.sum(0) == 2).all()
    square = np.zeros((32, 40), bool)
    square[8:24, 10:30] = True
    best = snap(torch.from_numpy(square[None]), segs)[0].numpy()
    assert (best & square).sum() / (best | square).sum() > 0.7  # the smoothed edge may split off


def test_bad_postprocess_spec_is_an_error(tmp_path):
    assert make_postprocess("none", lambda i: tmp_path / f"{i}.jpg") is None
    with pytest.raises(ValueError, match="--postprocess must be"):
        make_postprocess("crf", lambda i: tmp_path / f"{i}.jpg")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        make_postprocess(f"mcg:{tmp_path / 'nope'}", lambda i: tmp_path / f"{i}.jpg")


def test_boxes_fill_each_detection_box():
    from wsis.inference import Detections

    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1, 1] = True
    det = Detections(torch.tensor([[1.0, 1.0, 4.0, 3.0], [0.0, 0.0, 8.0, 6.0]]), torch.tensor([1, 2]),
                     torch.tensor([0.9, 0.5]), masks)  # fmt: skip
    out = make_postprocess("boxes", lambda i: None)("a", det)
    assert out.shape == (2, 6, 8) and out[0].sum() == 6 and out[0, 1:3, 1:4].all() and out[1].all()


def test_mask_nms_drops_a_repeated_mask_of_the_same_class_only():
    from wsis.evaluation.postprocess import mask_nms
    from wsis.inference import Detections

    masks = torch.zeros(5, 6, 8, dtype=torch.bool)
    masks[:4, :3, :4] = True  # four detections share one segment
    masks[2, 3, 0] = True  # ... one of them with a pixel more: IoU 12/13 with the others
    masks[4, 3:, 4:] = True  # one elsewhere
    boxes = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    det = Detections(boxes, torch.tensor([1, 1, 1, 2, 1]), torch.tensor([0.5, 0.9, 0.7, 0.3, 0.1]), masks)
    out = mask_nms(det, 0.5)
    # highest score first: row 1 (0.9) keeps its class's segment, rows 0 and 2 repeat it; row 3 is
    # another class, row 4 another segment
    assert out.scores.tolist() == pytest.approx([0.9, 0.3, 0.1]) and out.classes.tolist() == [1, 2, 1]
    assert torch.equal(out.boxes, boxes[[1, 3, 4]]) and torch.equal(out.masks, masks[[1, 3, 4]])
    assert len(mask_nms(det, 0.95).scores) == 4  # 12/13 < 0.95: row 2 stays, row 0 (identical to row 1) goes
    assert mask_nms(det, 1.0) is det  # 1 keeps every detection
    one = Detections(boxes[:1], torch.tensor([1]), torch.tensor([0.5]), masks[:1])
    assert mask_nms(one, 0.5) is one
    empty = torch.zeros(2, 6, 8, dtype=torch.bool)  # empty masks overlap nothing (IoU 0)
    two = Detections(boxes[:2], torch.tensor([1, 1]), torch.tensor([0.5, 0.4]), empty)
    assert len(mask_nms(two, 0.5).scores) == 2


def test_postprocess_nms_must_lie_in_0_1():
    from wsis import config as config_lib

    for bad in ("0", "1.5"):
        with pytest.raises(ValueError, match=r"test\.postprocess_nms"):
            config_lib.load(None, [f"test.postprocess_nms={bad}"])
