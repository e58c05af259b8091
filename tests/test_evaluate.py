"""Metrics on hand-made cases and against pycocotools; paste-back; the ensemble; the evaluate/predict CLIs."""
import json
import warnings

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import hand_written_voc, needs_timm, tiny_config
from wsis import evaluate, evaluation, predict, train
from wsis.engine.checkpoint import load_model
from wsis.evaluation import metrics
from wsis.data import proposals
from wsis.data.loader import InferenceDataset
from wsis.inference import Predictor, paste_masks
from wsis.inference import test_views as views_of  # not a test


def block(h, w, y0, x0, n_rows, n_cols):
    m = np.zeros((h, w), bool)
    m[y0 : y0 + n_rows, x0 : x0 + n_cols] = True
    return m


def one_image():
    """Two ground-truth 10x10 instances of class 1; predictions with IoU 0.8, 0.6 (same gt) and 0.3."""
    gt = np.stack([block(40, 40, 0, 0, 10, 10), block(40, 40, 20, 20, 10, 10)])
    pred = np.stack([block(40, 40, 0, 0, 8, 10), block(40, 40, 0, 0, 6, 10), block(40, 40, 20, 20, 3, 10)])
    return metrics.ImageResult(
        "a", np.array([1, 1, 1]), np.array([0.9, 0.8, 0.7]),
        np.array([[0, 0, 10, 8], [0, 0, 10, 6], [20, 20, 30, 23]], float),
        np.array([1, 1]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float),
        pred_masks=pred, gt_masks=gt, gt_mask_classes=np.array([1, 1]), void=np.zeros((40, 40), bool),
    )  # fmt: skip


def test_map_abo_and_det_map_on_a_hand_made_case():
    m = metrics.instance_metrics([one_image()], num_classes=2)
    assert m["mAP@0.5"] == pytest.approx(50.0)  # TP, FP (gt taken), FP (IoU 0.3): AP = 1 x 0.5
    assert m["mAP@0.25"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))  # TP, FP, TP
    assert m["mAP@0.75"] == pytest.approx(50.0)
    assert m["ABO"] == pytest.approx(55.0)  # (0.8 + 0.3) / 2
    assert m["det_mAP@0.5"] == pytest.approx(50.0)
    assert np.isnan(m["per_class"]["mAP@0.5"][1])  # class 2 has no ground truth: not in the mean


def test_void_pixels_are_ignored():
    res = one_image()
    res.void = np.zeros((40, 40), bool)
    res.void[8:10, 0:10] = True  # the 20 pixels of gt 0 that prediction 0 misses
    assert metrics.mask_iou(res.pred_masks[:1], res.gt_masks[:1], res.void)[0, 0] == pytest.approx(1.0)


def test_corloc_counts_the_top_detection_only():
    hit = metrics.ImageResult("a", np.array([1, 1]), np.array([0.9, 0.1]), np.array([[0, 0, 10, 10], [50, 50, 60, 60]], float),
                              np.array([1]), np.array([[0, 0, 10, 10]], float))  # fmt: skip
    miss = metrics.ImageResult("b", np.array([1, 1]), np.array([0.9, 0.1]), np.array([[50, 50, 60, 60], [0, 0, 10, 10]], float),
                               np.array([1, 2]), np.array([[0, 0, 10, 10], [0, 0, 5, 5]], float))  # fmt: skip
    out = metrics.corloc([hit, miss], num_classes=2)
    assert out["per_class"][0] == pytest.approx(50.0) and out["per_class"][1] == 0.0
    assert out["CorLoc"] == pytest.approx(25.0)


def boxes_only(classes, scores, boxes, gt_classes, gt_boxes, difficult):
    return metrics.ImageResult("a", np.array(classes), np.array(scores, float), np.array(boxes, float),
                               np.array(gt_classes), np.array(gt_boxes, float), np.array(difficult))  # fmt: skip


def test_det_map_ignores_difficult_objects_as_the_voc_devkit():
    """Two class-1 boxes, the second difficult; detections on it, on the easy one, and a miss."""
    gt = [[0, 0, 10, 10], [20, 20, 30, 30]]
    res = boxes_only([1, 1, 1], [0.9, 0.8, 0.7], [[20, 20, 30, 30], [0, 0, 10, 10], [50, 50, 60, 60]], [1, 1], gt,
                     [False, True])  # fmt: skip
    # ignored (difficult), TP, FP with 1 positive: precision 1 at recall 1 -> AP 100
    assert metrics.mean_ap([res], 1, 0.5, "box")["mAP"] == pytest.approx(100.0)
    res.gt_difficult = None  # without the flag: TP, TP, FP over 2 positives
    assert metrics.mean_ap([res], 1, 0.5, "box")["mAP"] == pytest.approx(100.0)
    res.pred_scores = np.array([0.7, 0.8, 0.9])  # the miss first: FP, TP, TP -> AP 2/3 over 2 positives
    assert metrics.mean_ap([res], 1, 0.5, "box")["mAP"] == pytest.approx(100 * 2 / 3)
    res.gt_difficult = np.array([False, True])  # FP, TP, ignored -> recall 1 at precision 1/2
    assert metrics.mean_ap([res], 1, 0.5, "box")["mAP"] == pytest.approx(50.0)
    only_difficult = boxes_only([1], [0.9], [[0, 0, 10, 10]], [1], [[0, 0, 10, 10]], [True])
    assert np.isnan(metrics.mean_ap([only_difficult], 1, 0.5, "box")["mAP"])  # no positive: class not scored


def test_corloc_counts_difficult_boxes_as_wsod_does():
    res = boxes_only([1, 2], [0.9, 0.9], [[50, 50, 60, 60], [0, 0, 10, 10]], [1, 2, 2],
                     [[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40]], [True, True, False])  # fmt: skip
    out = metrics.corloc([res], num_classes=2)
    assert out["per_class"][0] == 0  # class 1 is only difficult here: the image counts, and the miss
    assert out["per_class"][1] == pytest.approx(100.0)  # a hit on class 2's difficult box counts
    assert out["CorLoc"] == pytest.approx(50.0)


def test_score_reads_the_difficult_flags_from_the_xml(tmp_path):
    """End to end through `evaluate.score`: the hand-written VOC tree's difficult person is ignored."""
    from wsis.data.voc import VOCDataset
    from wsis.evaluate import score
    from wsis.inference import Detections

    hand_written_voc(tmp_path)
    data = VOCDataset(tmp_path, "val")
    (image_id,) = data.image_ids
    inst = data.instances(image_id)
    person = data.classes.index("person") + 1
    assert person in inst.classes.tolist()  # the difficult person is an instance of the masks, scored below
    det = Detections(boxes=inst.boxes.clone(), scores=torch.tensor([0.9] * len(inst.boxes)), classes=inst.classes.clone(),
                     masks=inst.masks.clone())  # fmt: skip
    m = score({image_id: det}, data, None, None)
    assert np.isnan(m["per_class"]["det_mAP@0.5"]["person"])  # a difficult box is no positive for det mAP
    assert m["per_class"]["CorLoc"]["person"] == 100  # and counts for CorLoc, as WSOD counts it
    assert m["per_class"]["mAP@0.5"]["person"] == pytest.approx(100.0)  # the masks carry no difficult flag


def test_the_whole_image_baseline(tmp_path, capsys):
    """One detection a present class, the whole image: CorLoc counts the images where an object of the
    class fills at least half the image (a box inside the image has IoU = its share of the area)."""
    from wsis.data.synthetic import Settings, generate
    from wsis.data.voc import VOCDataset

    root = generate(tmp_path / "d", Settings(num_train=0, num_val=8, min_image=96, max_image=96, min_object=40,
                                             max_object=92, max_instances=2), progress=False)  # fmt: skip
    evaluate.main(["--whole-image", "--data", str(root), "--split", "val", "--out", str(tmp_path / "w")])
    m = json.loads((tmp_path / "w" / "metrics.json").read_text())
    assert "CorLoc" in capsys.readouterr().out
    data = VOCDataset(root, "val")
    found, present = np.zeros(len(data.classes)), np.zeros(len(data.classes))
    for image_id in data.image_ids:
        h, w = data.image_size(image_id)
        classes, boxes, difficult = data.objects(image_id)
        share = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (h * w)).tolist()
        for c in set(classes[~difficult].tolist()):
            present[c - 1] += 1
            found[c - 1] += any(s >= 0.5 for k, s, d in zip(classes.tolist(), share, difficult.tolist()) if k == c and not d)
    assert 0 < found.sum() < present.sum()  # objects that fill the image and objects that do not
    for name, f, p in zip(data.classes, found, present):
        assert m["per_class"]["CorLoc"][name] == pytest.approx(100 * f / p) if p else np.isnan(m["per_class"]["CorLoc"][name])
    with pytest.raises(SystemExit):
        evaluate.main(["--whole-image"])  # which data?
    assert "--whole-image needs --data ROOT" in capsys.readouterr().err


def test_visualize_draws_the_ground_truth_beside_the_predictions(tmp_path, capsys):
    from wsis import visualize
    from wsis.data.voc import VOCDataset
    from wsis.evaluation import to_coco
    from wsis.inference import Detections

    hand_written_voc(tmp_path / "d")
    data = VOCDataset(tmp_path / "d", "val")
    (image_id,) = data.image_ids
    inst = data.instances(image_id)
    dog = inst.classes == data.classes.index("dog") + 1  # the dog predicted at 0.9, the person at 0.1
    det = Detections(inst.boxes, inst.classes, torch.where(dog, 0.9, 0.1), inst.masks)
    (tmp_path / "p.json").write_text(json.dumps(to_coco({image_id: det}, data)))
    image = np.asarray(Image.open(data.image_path(image_id)).convert("RGB")).astype(int)
    h, w = image.shape[:2]

    def halves(min_score):
        out = tmp_path / f"pics{min_score}"
        visualize.main(["--predictions", str(tmp_path / "p.json"), "--data", str(tmp_path / "d"), "--out", str(out),
                        "--min-score", str(min_score)])  # fmt: skip
        assert "1 pictures (ground truth | predictions)" in capsys.readouterr().out
        picture = np.asarray(Image.open(out / f"{image_id}.png").convert("RGB")).astype(int)
        assert picture.shape == (h, 2 * w + 4, 3)
        return picture[:, :w], picture[:, w + 4:]

    truth, nothing = halves(2)
    assert not np.array_equal(truth, image) and np.array_equal(nothing, image)  # the truth drawn; no detection
    assert np.array_equal(halves(0.5)[0], truth)
    assert not np.array_equal(halves(0.5)[1], halves(0.05)[1])  # the person's 0.1 drawn at 0.05 only
    with pytest.raises(SystemExit):
        visualize.main(["--predictions", str(tmp_path / "p.json"), "--data", str(tmp_path / "d"), "--ids", "nope",
                        "--out", str(tmp_path / "x")])  # fmt: skip
    assert "--ids: not images of val: ['nope']" in capsys.readouterr().err


def test_mask_ap_equals_pycocotools():
    """Same number where both define it: one IoU threshold, COCO's 101-point sampling
    (`points=101`), no crowd regions, at most 100 predictions an image, area range 'all', and each
    prediction reaching the threshold with at most one ground-truth instance (so VOC's "best
    instance or nothing" and COCO's "best free instance" match alike)."""
    pytest.importorskip("pycocotools")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    results, images, anns, dets = [], [], [], []
    for i in range(12):
        gts, classes = [], []
        for k in range(rng.integers(1, 4)):  # instances in separate 20-pixel cells
            gts.append(block(60, 60, 20 * k + 2, int(rng.integers(0, 30)), int(rng.integers(8, 16)), int(rng.integers(8, 20))))
            classes.append(int(rng.integers(1, 3)))
        preds, pcls, scores = [], [], []
        for g, c in zip(gts, classes):
            for _ in range(rng.integers(0, 3)):  # shifted copies: some hits, duplicates and misses
                preds.append(np.roll(g, int(rng.integers(-6, 7)), axis=1))
                pcls.append(c if rng.random() < 0.8 else 3 - c)
                scores.append(float(rng.random()))
        gts, preds = np.array(gts), np.array(preds).reshape(-1, 60, 60)
        results.append(metrics.ImageResult(str(i), np.array(pcls, np.int64), np.array(scores), np.zeros((len(preds), 4)),
                                           np.array(classes), np.zeros((len(gts), 4)), pred_masks=preds, gt_masks=gts,
                                           gt_mask_classes=np.array(classes)))  # fmt: skip
        images.append({"id": i, "height": 60, "width": 60})
        for g, c in zip(gts, classes):
            rle = mask_utils.encode(np.asfortranarray(g.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "segmentation": rle, "iscrowd": 0,
                         "area": float(g.sum()), "bbox": list(mask_utils.toBbox(rle))})  # fmt: skip
        for p, c, s in zip(preds, pcls, scores):
            dets.append({"image_id": i, "category_id": c, "score": s,
                         "segmentation": mask_utils.encode(np.asfortranarray(p.astype(np.uint8)))})  # fmt: skip
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}
    gt.createIndex()
    ev = COCOeval(gt, gt.loadRes(dets), "segm")
    for t in (0.5, 0.75):
        ev.params.iouThrs = np.array([t])
        ev.params.maxDets = [100]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
        ev.accumulate()
        coco = [float(np.mean(ev.eval["precision"][0, :, k, 0, 0])) for k in range(2)]
        ours = metrics.mean_ap(results, 2, t, "mask", points=101)["per_class"]
        assert ours == pytest.approx([100 * v for v in coco], abs=1e-9)


def test_paste_masks_fills_the_box_pixels():
    ones = torch.ones(1, 28, 28)
    out = paste_masks(ones, torch.tensor([[2.0, 3.0, 6.0, 8.0]]), 10, 12, 0.5)
    expected = torch.zeros(10, 12, dtype=torch.bool)
    expected[3:8, 2:6] = True
    assert torch.equal(out[0], expected)
    half = torch.zeros(1, 28, 28)
    half[:, :, :14] = 1  # the left half of the box
    out = paste_masks(half, torch.tensor([[0.0, 0.0, 8.0, 4.0]]), 4, 8, 0.5)
    assert out[0, :, :4].all() and not out[0, :, 4:].any()
    clipped = paste_masks(ones.expand(2, 28, 28), torch.tensor([[-5.0, -5.0, 3.0, 3.0], [4.0, 4.0, 4.0, 9.0]]), 6, 6, 0.5)
    assert clipped[0, :3, :3].all() and clipped[0].sum() == 9 and not clipped[1].any()  # degenerate box: empty
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), 5, 5, 0.5).shape == (0, 5, 5)


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    needs_timm()
    return train.run(tiny_config(tiny_root, tmp_path_factory.mktemp("ev") / "run", "solver.max_iter=2"))


@pytest.mark.parametrize("masks, threshold", [("mean", 0.4), ("seg", 0.5), ("seg", 0.3)])
def test_one_view_ensemble_equals_plain_inference(trained, tiny_root, masks, threshold):
    model, cfg, _ = load_model(trained / "checkpoints" / "last.pt", ["test.score_thresh=0.0", f"test.masks={masks}",
                                                                     f"test.mask_threshold={threshold}"])  # fmt: skip
    data = InferenceDataset(tiny_root, "val", cfg.data, (112,), False)
    views = data[0]
    h, w = data.data.image_size(views[0].image_id)
    det = Predictor(model, cfg.test, torch.device("cpu"))(views, (h, w))
    # by hand: one view, mean refinement scores, argmax class, per-class NMS, masks of test.masks
    s = views[0]
    res3, res4 = model.features(s.image[None])
    rois = torch.cat([torch.zeros(len(s.boxes), 1), s.boxes], 1)
    scores, boxes = model.detect(res4, rois)
    boxes = (boxes / s.scale).clamp(min=0)
    boxes = torch.min(boxes, torch.tensor([w, h, w, h], dtype=boxes.dtype))
    top, cls = scores.max(1)
    from wsis.ops import reference as ref

    keep = ref.batched_nms(boxes, top, cls, cfg.test.nms)[: cfg.test.max_detections]
    torch.testing.assert_close(det.boxes, boxes[keep])
    assert torch.equal(det.classes, cls[keep] + 1)
    vb = boxes[keep] * s.scale
    maps = model.mask_maps(res3, res4, torch.cat([torch.zeros(len(vb), 1), vb], 1), cls[keep] + 1, masks)
    assert torch.equal(det.masks, paste_masks(maps, boxes[keep], h, w, cfg.test.mask_threshold))


def test_evaluate_cli_and_rescoring_its_predictions(trained, tiny_root, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "last.pt"
    evaluate.main(["--checkpoint", str(ckpt), "--data", str(tiny_root), "--corloc-split", "none", "--out", str(tmp_path / "a")])
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    evaluate.main(["--predictions", str(tmp_path / "a" / "predictions.json"), "--data", str(tiny_root), "--out", str(tmp_path / "b")])
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    for k in ("mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc"):
        assert again[k] == pytest.approx(first[k], abs=1e-6), k
    assert "postprocessed" not in again  # a foreign file is scored as given unless --postprocess says
    assert "mAP@0.5" in capsys.readouterr().out
    # the same post-processing as the checkpoint's evaluation, from the file
    evaluate.main(["--predictions", str(tmp_path / "a" / "predictions.json"), "--data", str(tiny_root),
                   "--postprocess", "segments", "--out", str(tmp_path / "c")])  # fmt: skip
    snapped = json.loads((tmp_path / "c" / "metrics.json").read_text())["postprocessed"]
    assert json.dumps(snapped) == json.dumps(first["postprocessed"])
    evaluate.main(["--predictions", str(tmp_path / "a" / "predictions.json"), "--data", str(tiny_root),
                   "--postprocess", "segments", "test.superpixel_iou=0", "--out", str(tmp_path / "d")])  # fmt: skip
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["postprocessed"]["superpixel_iou"] == 0
    with pytest.raises(SystemExit):
        evaluate.main(["--predictions", str(tmp_path / "a" / "predictions.json"), "--data", str(tiny_root),
                       "--postprocess", "crf"])  # fmt: skip
    assert "--postprocess must be" in capsys.readouterr().err


def test_a_checkpoint_that_does_not_fit_says_what_differs(trained):
    with pytest.raises(ValueError, match="does not fit .*different shapes: .*img"):
        load_model(trained / "checkpoints" / "last.pt", ["model.img_dim=4"])


def test_predict_writes_overlays_and_skips_unreadable_images(trained, tiny_root, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("syn_000006.jpg", "syn_000007.jpg"):
        (folder / name).write_bytes((tiny_root / "JPEGImages" / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(SystemExit) as code:
        predict.main(["--checkpoint", str(trained / "checkpoints" / "last.pt"), str(folder), "--out", str(tmp_path / "out"),
                      "--min-score", "0"])  # fmt: skip
    assert code.value.code == 0
    assert "skipped" in capsys.readouterr().err
    for stem in ("syn_000006", "syn_000007"):
        assert (tmp_path / "out" / f"{stem}.png").is_file()
        entries = json.loads((tmp_path / "out" / f"{stem}.json").read_text())["detections"]
        assert all({"bbox", "score", "segmentation", "category_name"} <= set(e) for e in entries)


def predicted(trained, image, out, *extra):
    with pytest.raises(SystemExit) as code:
        predict.main(["--checkpoint", str(trained / "checkpoints" / "last.pt"), str(image), "--out", str(out), *extra])
    assert code.value.code == 0
    return json.loads((out / f"{image.stem}.json").read_text())


def test_predict_draws_the_masks_of_the_configs_postprocess(trained, tiny_root, tmp_path):
    """By default the masks behind the headline figures (test.postprocess, segments, with mask NMS);
    --postprocess names another, and none gives the model's own."""
    from pycocotools import mask as mask_utils

    model, cfg, _ = load_model(trained / "checkpoints" / "last.pt")
    image = tiny_root / "JPEGImages" / "syn_000006.jpg"
    cached = proposals.cache_dir(tiny_root, cfg.data.proposal_mode, cfg.data.proposal_scale)
    data = InferenceDataset(tiny_root, "val", cfg.data, *views_of(cfg))
    index = data.data.image_ids.index("syn_000006")
    own = Predictor(model, cfg.test, torch.device("cpu"))(data[index], data.data.image_size("syn_000006"))
    post = evaluation.postprocess_detections("segments", lambda _: image, cfg.test)("syn_000006", own)
    assert len(post.scores) > 0

    def rles(entries):
        return [e["segmentation"] for e in entries]

    default = predicted(trained, image, tmp_path / "default", "--proposals", str(cached))
    assert default["postprocess"] == "segments"
    assert rles(default["detections"]) == rles(evaluation.to_coco({"syn_000006": post}))
    none = predicted(trained, image, tmp_path / "none", "--proposals", str(cached), "--postprocess", "none")
    assert rles(none["detections"]) == rles(evaluation.to_coco({"syn_000006": own}))
    assert len(none["detections"]) > 1
    one = predicted(trained, image, tmp_path / "one", "--proposals", str(cached), "--postprocess", "none",
                    "test.max_detections=1")  # key=value after the options, as the usage line writes it
    assert rles(one["detections"]) == rles(none["detections"])[:1]
    boxes = predicted(trained, image, tmp_path / "boxes", "--postprocess", "boxes")
    assert boxes["postprocess"] == "boxes" and len(boxes["detections"]) == len(none["detections"])
    for e in boxes["detections"]:
        x, y, w, h = e["bbox"]
        mask = mask_utils.decode(e["segmentation"]).astype(bool)
        rows, cols = mask.any(1).nonzero()[0], mask.any(0).nonzero()[0]
        assert mask.sum() == len(rows) * len(cols)  # a filled rectangle
        assert np.allclose([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], [x, y, x + w, y + h], atol=1)


def test_predict_refuses_bad_postprocess_and_images_of_one_name(trained, tiny_root, tmp_path, capsys):
    ckpt = str(trained / "checkpoints" / "last.pt")
    image = tiny_root / "JPEGImages" / "syn_000006.jpg"
    with pytest.raises(SystemExit) as code:
        predict.main(["--checkpoint", ckpt, str(image), "--out", str(tmp_path / "o"), "--postprocess", "crf"])
    assert code.value.code == 1 and "--postprocess must be" in capsys.readouterr().err
    (tmp_path / "png").mkdir()
    Image.open(image).save(tmp_path / "png" / "syn_000006.png")
    with pytest.raises(SystemExit) as code:
        predict.main(["--checkpoint", ckpt, str(image), str(tmp_path / "png"), "--out", str(tmp_path / "o")])
    assert code.value.code == 1 and "more than one image named syn_000006" in capsys.readouterr().err
    (tmp_path / "mcg").mkdir()  # no syn_000006.mat in it: the image is skipped, with the reason
    with pytest.raises(SystemExit) as code:
        predict.main(["--checkpoint", ckpt, str(image), "--out", str(tmp_path / "o"),
                      "--postprocess", f"mcg:{tmp_path / 'mcg'}"])  # fmt: skip
    assert code.value.code == 1 and "skipped" in capsys.readouterr().err


def test_predict_on_a_folder_without_images_is_an_error(trained, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as code:
        predict.main(["--checkpoint", str(trained / "checkpoints" / "last.pt"), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert code.value.code == 1 and "no images" in capsys.readouterr().err


def test_evaluate_a_synthetic_run_without_data(trained, tiny_root, tmp_path, capsys):
    """The default run's config names no data.root: the CLI finds the synthetic set itself."""
    ckpt = trained / "checkpoints" / "last.pt"
    evaluate.main(["--checkpoint", str(ckpt), "data.root=", f"data.synthetic_dir={tiny_root}", "--out", str(tmp_path / "a")])
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["num_images"] == 3 and m["postprocessed"]["method"] == "segments"
    evaluate.main(["--checkpoint", str(ckpt), "--data", str(tiny_root), "--postprocess", "none", "--out", str(tmp_path / "b")])
    plain = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "postprocessed" not in plain
    assert {k: plain[k] for k in evaluation.MASK_METRICS} == {k: m[k] for k in evaluation.MASK_METRICS}
    assert "(segments masks)" in capsys.readouterr().out


def test_postprocessed_metrics_change_the_masks_only(trained, tiny_root):
    model, cfg, _ = load_model(trained / "checkpoints" / "last.pt")
    m, dets, data = evaluation.evaluate_model(model, cfg, tiny_root, "val", None, torch.device("cpu"), "segments")
    p = m["postprocessed"]
    assert set(p) == {"method", "nms", "superpixel_iou", "superpixel_cover", "segment_box_weight", "per_class",
                      *evaluation.MASK_METRICS}  # fmt: skip
    assert (p["nms"], p["superpixel_iou"], p["superpixel_cover"], p["segment_box_weight"]) == (
        cfg.test.postprocess_nms, cfg.test.superpixel_iou, cfg.test.superpixel_cover, cfg.test.segment_box_weight)
    again = evaluation.postprocessed_metrics(dets, data, "segments", cfg.test)
    assert json.dumps(again) == json.dumps(p)  # per-class NaN where a class has no instance
    boxes = evaluation.postprocessed_metrics(dets, data, "boxes", cfg.test)
    assert boxes["nms"] is None and "superpixel_iou" not in boxes
    with pytest.raises(ValueError, match="--postprocess must be"):
        evaluation.evaluate_model(model, cfg, tiny_root, "val", None, torch.device("cpu"), "crf")


def test_a_checkpoint_older_than_a_key_says_it_takes_todays_default(trained, tmp_path):
    from wsis.engine import checkpoint

    state = checkpoint.load(trained / "checkpoints" / "last.pt")
    del state["config"]["test"]["masks"]  # as saved before test.masks existed
    torch.save(state, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match=r"old\.pt: its config predates test\.masks='seg'; today's defaults"):
        _, cfg, _ = load_model(tmp_path / "old.pt")
    assert cfg.test.masks == "seg"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # named on the command line: nothing to say
        assert load_model(tmp_path / "old.pt", ["test.masks=mean"])[1].test.masks == "mean"
        load_model(trained / "checkpoints" / "last.pt")  # today's checkpoint names every key


def test_a_checkpoint_older_than_a_key_of_the_model_keeps_the_model_it_was(trained, tmp_path):
    """model.seg_res3 came with a default (true) other than what wsis built before it: a checkpoint
    that predates the key loads as the head it has, without a warning; a run folder's config too."""
    from wsis import config as config_lib
    from wsis.engine import checkpoint

    state = checkpoint.load(trained / "checkpoints" / "last.pt")
    assert state["config"]["model"]["seg_res3"] is True
    del state["config"]["model"]["seg_res3"]
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("seg.skip.")}
    torch.save(state, tmp_path / "old.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, cfg, _ = load_model(tmp_path / "old.pt")
    assert cfg.model.seg_res3 is False and model.seg.skip is None
    saved = config_lib.to_dict(cfg)
    del saved["model"]["seg_res3"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert config_lib.load(tmp_path / "config.yaml", saved=True).model.seg_res3 is False  # --resume reads it so
    assert config_lib.load(tmp_path / "config.yaml").model.seg_res3 is True  # a config of the user's: today's default


def test_load_model_honours_the_config_device(trained):
    if torch.cuda.is_available():
        pytest.skip("the machine has a GPU: device=cuda would load")
    with pytest.raises(ValueError, match="device=cuda.*no CUDA device"):
        load_model(trained / "checkpoints" / "last.pt", ["device=cuda"])
    model, cfg, _ = load_model(trained / "checkpoints" / "last.pt", ["device=cpu"])
    assert next(model.parameters()).device.type == "cpu"


def test_oracle_boxes_score_the_mask_path_beside_filled_boxes(trained, tiny_root, tmp_path, capsys):
    evaluate.main(["--checkpoint", str(trained / "checkpoints" / "last.pt"), "--data", str(tiny_root), "--oracle-boxes",
                   "--out", str(tmp_path / "o")])  # fmt: skip
    m = json.loads((tmp_path / "o" / "oracle_boxes.json").read_text())
    assert set(m) == {"masks", "filled_boxes", "split", "num_images"} and m["num_images"] == 3
    for name in ("masks", "filled_boxes"):
        assert set(evaluation.MASK_METRICS) <= set(m[name]) and 0 <= m[name]["ABO"] <= 100
    # filled ground-truth boxes find every instance at IoU 0.25 on shapes that fill a fair part of their box
    assert m["filled_boxes"]["mAP@0.25"] == pytest.approx(100.0)
    assert "the boxes filled in" in capsys.readouterr().out


def test_oracle_box_masks_equal_the_predictors_masks_on_those_boxes(trained, tiny_root):
    model, cfg, _ = load_model(trained / "checkpoints" / "last.pt")
    data = InferenceDataset(tiny_root, "val", cfg.data, (112,), False)
    views = data[0]
    inst = data.data.instances(views[0].image_id)
    predictor = Predictor(model, cfg.test, torch.device("cpu"))
    masks = predictor.masks_of(views, inst.boxes, inst.classes, tuple(inst.void.shape))
    s = views[0]
    res3, res4 = model.features(s.image[None])
    vb = inst.boxes * s.scale
    maps = model.mask_maps(res3, res4, torch.cat([torch.zeros(len(vb), 1), vb], 1), inst.classes, cfg.test.masks)
    assert torch.equal(masks, paste_masks(maps, inst.boxes, *inst.void.shape, cfg.test.mask_threshold))
