import shutil

import numpy as np
import pytest
import torch

import wsis.ops as W
from wsis.data import VOCDataset
from wsis.data import proposals as P
from wsis.data.synthetic import Settings, generate

pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")


def test_filter_boxes():
    boxes = np.array(
        [[-5, -5, 50, 40], [10, 10, 12, 40], [0, 0, 50, 40], [20, 20, 90, 70], [10, 10, 30, 30], [1, 1, 9, 9]],
        dtype=np.float32,
    )
    out = P.filter_boxes(boxes, height=60, width=80, min_size=8, max_boxes=3)
    # clipped, the 2-px-wide one dropped, the duplicate of the clipped first dropped, capped at 3
    assert out.tolist() == [[0, 0, 50, 40], [20, 20, 80, 60], [10, 10, 30, 30]]
    assert P.filter_boxes(np.zeros((0, 4)), 10, 10).shape == (0, 4)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop") / "d"
    # default settings, fewer images: the recall below is the figure on a sample of it
    return generate(root, Settings(num_train=3, num_val=12), progress=False)


def test_compute_caches_and_resumes(small):
    folder = P.compute(small, "train", jobs=2, progress=False)
    files = sorted(folder.glob("*.npy"))
    assert [f.stem for f in files] == VOCDataset(small, "train").image_ids
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    files[1].unlink()  # as if the run had been interrupted there
    (folder / ".syn_000000.123.tmp.npy").write_bytes(b"partial")  # a temp file left by a killed worker
    P.compute(small, "train", jobs=2, progress=False)
    assert files[1].is_file()
    assert files[0].stat().st_mtime_ns == stamps[files[0].name] and files[2].stat().st_mtime_ns == stamps[files[2].name]
    boxes = P.load(small, files[1].stem)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 10
    with pytest.raises(FileNotFoundError, match="syn_999999"):
        P.load(small, "syn_999999")


@pytest.mark.parametrize("mode, scale", [("fast", 1.0), ("single", 1.0), ("fast", 0.55)])
def test_proposals_cover_the_objects(small, mode, scale):
    """Best-IoU recall at 0.5 of the first 100 filtered proposals over the synthetic val instances."""
    P.compute(small, "val", mode, jobs=2, progress=False, scale=scale)
    data = VOCDataset(small, "val")
    hits = total = 0
    for image_id in data.image_ids:
        inst = data.instances(image_id)
        h, w = inst.void.shape
        boxes = torch.from_numpy(P.filter_boxes(P.load(small, image_id, mode, scale), h, w, max_boxes=100))
        hits += int((W.box_iou(inst.boxes, boxes).max(1).values >= 0.5).sum())
        total += len(inst.boxes)
    assert hits / total >= 0.8, hits / total


def test_a_scale_runs_on_the_resized_image_and_keeps_the_stored_pixels(small, monkeypatch):
    import cv2

    val = VOCDataset(small, "val")
    path = val.image_path(val.image_ids[0])
    height, width = cv2.imread(str(path)).shape[:2]
    seen = []
    resize = cv2.resize
    monkeypatch.setattr(cv2, "resize", lambda image, size, **kw: seen.append(size) or resize(image, size, **kw))
    boxes = P.selective_search(path, "fast", 0.55)
    assert seen == [(round(width * 0.55), round(height * 0.55))]
    full = P.selective_search(path, "fast")
    assert len(boxes) and boxes.dtype == np.float32 and boxes.shape[1] == 4
    # in the stored image's pixels: the boxes span it, as the full-size ones do, and differ from them
    assert boxes[:, 2].max() == pytest.approx(width, abs=2) and boxes[:, 3].max() == pytest.approx(height, abs=2)
    assert boxes.min() >= 0 and boxes[:, 2].max() <= width + 1e-3 and boxes[:, 3].max() <= height + 1e-3
    assert len(boxes) != len(full) or not np.array_equal(boxes, full)
    np.testing.assert_array_equal(P.selective_search(path, "fast", 0.55), boxes)  # a function of image, mode, scale


def test_each_scale_has_its_own_cache(small):
    full = P.compute(small, "val", jobs=1, progress=False)
    half = P.compute(small, "val", jobs=1, progress=False, scale=0.5)
    assert full.name == "selective_search_fast" and half.name == "selective_search_fast_x0.5"
    val = VOCDataset(small, "val")
    image_id = val.image_ids[0]
    assert P.cache_path(small, image_id, "fast", 0.5).parent == half
    expected = P.selective_search(val.image_path(image_id), "fast", 0.5)
    np.testing.assert_array_equal(P.load(small, image_id, "fast", 0.5), expected)
    with pytest.raises(FileNotFoundError, match="syn_999999"):
        P.load(small, "syn_999999", "fast", 0.5)


def test_a_read_only_root_keeps_its_caches_elsewhere(small, tmp_path, monkeypatch):
    from wsis.data import segments
    from wsis.data.cache import cache_root

    shared = tmp_path / "shared"
    shutil.copytree(small / "JPEGImages", shared / "JPEGImages")
    shutil.copytree(small / "ImageSets", shared / "ImageSets")
    assert cache_root(shared) == shared  # writable: the caches beside the images, as always
    monkeypatch.setenv("WSIS_CACHE", str(tmp_path / "cache"))
    shared.chmod(0o555)  # a shared data set; the mode bits count for the superuser too
    try:
        folder = P.compute(shared, "val", jobs=1, progress=False)
        image_id = VOCDataset(shared, "val").image_ids[0]
        assert folder.parent.parent == cache_root(shared) and cache_root(shared).parent == tmp_path / "cache"
        assert P.load(shared, image_id).shape[1] == 4 and not (shared / "proposals").exists()
        assert segments.cache_path(shared, image_id).is_relative_to(tmp_path / "cache")
        other = tmp_path / "other" / "shared"  # another data set of the same name: another folder
        other.mkdir(parents=True)
        other.chmod(0o555)
        assert cache_root(other) != cache_root(shared) and cache_root(other).name.startswith("shared-")
    finally:
        shared.chmod(0o755)


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_recall_counts_the_boxes_a_proposal_overlaps(small, tmp_path, capsys):
    from wsis.data.cache import save_atomic

    root = tmp_path / "d"
    shutil.copytree(small, root, ignore=shutil.ignore_patterns("proposals", "segments"))
    data = VOCDataset(root, "val")
    folder = P.cache_dir(root, "fast")
    folder.mkdir(parents=True)
    (folder / P.ORDER_STAMP).touch()  # written by hand: no order to warn of
    expected = {0.5: 0, 0.7: 0}
    total = 0
    for image_id in data.image_ids:
        _, gt, ignore = data.objects(image_id)
        gt = gt[~ignore].numpy()
        shrunk = gt[:1] - np.array([0, 0, 0.25, 0.25]) * np.tile(gt[:1, 2:] - gt[:1, :2], 2)  # IoU 0.75^2, inside
        placed = np.concatenate([gt[1:2], shrunk])
        junk = np.tile([[0, 0, 9, 9]], (150, 1)) + np.arange(150)[:, None]  # small boxes in a corner
        save_atomic(folder / f"{image_id}.npy", np.concatenate([junk, placed]).astype(np.float32))
        for t in expected:  # a loop over the boxes: a neighbour may overlap a placed box too
            expected[t] += sum(max(_iou(g, p) for p in placed) >= t for g in gt)
        total += len(gt)
    assert 0 < expected[0.7] < expected[0.5] < total  # the shrunk box counts at 0.5 only
    r = P.recall(root, "val", "fast")
    assert r["boxes"] == total
    assert r["R@100/0.5"] == r["R@100/0.7"] == 0  # the placed boxes lie after the 150 junk boxes
    assert r["R@300/0.5"] == r["R@2000/0.5"] == pytest.approx(100 * expected[0.5] / total)
    assert r["R@300/0.7"] == pytest.approx(100 * expected[0.7] / total)
    P.main(["--root", str(root), "--split", "val", "--recall", "--scale", "1"])
    assert f"recall of {total} ground-truth boxes: R@100/0.5 0.0" in capsys.readouterr().out


@pytest.mark.parametrize("scale", [0, -1, 5, float("nan")])
def test_a_bad_scale_is_named(scale):
    from wsis import config as config_lib

    with pytest.raises(ValueError, match="data.proposal_scale"):
        config_lib.load(None, [f"data.proposal_scale={scale}"])
    with pytest.raises(ValueError, match="data.proposal_scale"):
        P.selective_search("unused.png", "fast", scale)


def test_load_mat_converts_coordinates_and_checks_the_image_list(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    boxes = np.empty(2, dtype=object)
    boxes[0] = np.array([[2, 1, 10, 20]], dtype=np.float64)  # y1 x1 y2 x2, 1-based inclusive
    boxes[1] = np.array([[1, 1, 5, 5], [3, 4, 8, 9]], dtype=np.float64)
    images = np.array(["2007_000001", "2007_000002"], dtype=object)
    scipy_io.savemat(tmp_path / "ss.mat", {"boxes": boxes, "images": images})
    out = P.load_mat(tmp_path / "ss.mat", ["2007_000001", "2007_000002"])
    assert out["2007_000001"].tolist() == [[0, 1, 20, 10]]
    assert out["2007_000002"].tolist() == [[0, 0, 5, 5], [3, 2, 9, 8]]
    with pytest.raises(ValueError, match="do not match"):
        P.load_mat(tmp_path / "ss.mat", ["2007_000002", "2007_000001"])
    with pytest.raises(ValueError, match="'boxes' and 'images'"):
        scipy_io.savemat(tmp_path / "bad.mat", {"x": np.zeros(2)})
        P.load_mat(tmp_path / "bad.mat", [])


def test_proposals_are_a_function_of_the_image(small, tmp_path):
    """The same images give the same boxes in the same order, in any process and any job order."""
    val = VOCDataset(small, "val")
    image = val.image_path(val.image_ids[0])
    for mode in ("fast", "single"):
        first = P.selective_search(image, mode)
        P.selective_search(val.image_path(val.image_ids[1]), mode)  # rand() moves on
        np.testing.assert_array_equal(P.selective_search(image, mode), first)
    twice = tmp_path / "twice"
    shutil.copytree(small, twice, ignore=shutil.ignore_patterns("proposals"))
    a = P.compute(small, "val", jobs=2, progress=False)
    b = P.compute(twice, "val", jobs=1, progress=False)  # one worker: every image after another one
    assert (a / P.ORDER_STAMP).is_file() and (b / P.ORDER_STAMP).is_file()
    for image_id in VOCDataset(small, "val").image_ids:
        np.testing.assert_array_equal(P.load(small, image_id), P.load(twice, image_id), err_msg=image_id)


def test_a_cache_from_before_the_seeded_order_is_named(small, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(small, old, ignore=shutil.ignore_patterns("proposals"))
    folder = P.cache_dir(old, "fast")
    folder.mkdir(parents=True)
    np.save(folder / "syn_000000.npy", np.zeros((1, 4), np.float32))  # a file without the folder's stamp
    with pytest.warns(UserWarning, match="before wsis seeded Selective Search"):
        P.compute(old, "train", jobs=1, progress=False)
    assert not (folder / P.ORDER_STAMP).exists()


def test_an_unknown_mode_is_named():
    from wsis import config as config_lib

    with pytest.raises(ValueError, match="data.proposal_mode"):
        config_lib.load(None, ["data.proposal_mode=slow"])
    with pytest.raises(ValueError, match="mode must be one of"):
        P.selective_search("unused.png", "slow")
