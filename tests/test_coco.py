"""COCO-format splits: the reader, both formats scoring alike, original ids in results, crowd, bad
input, and training and evaluating end to end."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pycocotools", reason="pycocotools is not installed")

from conftest import needs_timm, tiny_config  # noqa: E402
from wsis import evaluate, evaluation  # noqa: E402
from wsis.data import proposals  # noqa: E402
from wsis.data.coco import COCODataset, voc_to_coco  # noqa: E402
from wsis.data.formats import open_split  # noqa: E402
from wsis.data.scan import BadData, scan  # noqa: E402
from wsis.data.synthetic import main  # noqa: E402
from wsis.data.voc import VOCDataset  # noqa: E402
from wsis.inference import Detections  # noqa: E402

SMALL = dict(num_train=4, num_val=4, min_image=96, max_image=128, min_object=24, max_object=60, max_instances=3)


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    """A synthetic set without void bands, as a VOC tree and as COCO JSONs over the same images."""
    root = tmp_path_factory.mktemp("both") / "d"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    main(["--out", str(root), "--format", "coco", "--void-width", "0", *args])
    return root


def test_the_synthetic_set_reads_the_same_in_both_formats(both_formats):
    voc = VOCDataset(both_formats, "val")
    coco = open_split(both_formats, str(both_formats / "annotations" / "val.json"))
    assert isinstance(coco, COCODataset) and coco.classes == voc.classes
    assert coco.image_ids == [f"JPEGImages/{i}.jpg" for i in voc.image_ids]
    for v, c in zip(voc.image_ids, coco.image_ids):
        assert coco.image_path(c) == voc.image_path(v) and coco.image_size(c) == voc.image_size(v)
        assert torch.equal(coco.labels(c), voc.labels(v))
        a, b = voc.instances(v), coco.instances(c)
        assert torch.equal(a.masks, b.masks) and torch.equal(a.classes, b.classes) and torch.equal(a.boxes, b.boxes)
        assert not b.void.any()
        classes, boxes, ignore = coco.objects(c)
        assert torch.equal(classes, a.classes) and torch.equal(boxes, a.boxes) and not ignore.any()


def _shifted_ground_truth(data, rng):
    """Detections made from the ground truth: masks shifted, a duplicate, and a wrong class."""
    dets = {}
    for image_id in data.image_ids:
        inst = data.instances(image_id)
        masks = torch.from_numpy(np.roll(inst.masks.numpy(), int(rng.integers(-4, 5)), axis=2))
        classes = inst.classes.clone()
        classes[: len(classes) // 2] = classes[: len(classes) // 2] % len(data.classes) + 1
        masks, classes = torch.cat([masks, masks[:1]]), torch.cat([classes, classes[:1]])
        boxes = torch.cat([inst.boxes, inst.boxes[:1]])
        dets[image_id] = Detections(boxes, classes, torch.from_numpy(rng.random(len(classes)).astype(np.float32)), masks)
    return dets


def test_the_same_images_score_the_same_through_both_formats(both_formats):
    voc = VOCDataset(both_formats, "val")
    coco = open_split(both_formats, str(both_formats / "annotations" / "val.json"))
    dets = _shifted_ground_truth(voc, np.random.default_rng(0))
    a = evaluation.score(dets, voc, None, None)
    b = evaluation.score({f"JPEGImages/{i}.jpg": d for i, d in dets.items()}, coco, None, None)
    for k in ("mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc", "num_images"):
        assert a[k] == pytest.approx(b[k]), k
    assert 0 < b["mAP@0.5"] < 100
    assert "coco" not in a and set(b["coco"]) == {"segm", "bbox"}
    assert set(b["coco"]["segm"]) == set(evaluation.COCO_STATS)
    perfect = {i: Detections(inst.boxes, inst.classes, torch.ones(len(inst.classes)), inst.masks)
               for i, inst in ((i, coco.instances(i)) for i in coco.image_ids)}  # fmt: skip
    assert evaluation.score(perfect, coco, None, None)["coco"]["segm"]["AP"] == pytest.approx(100.0)


def hand_made(tmp_path, content=None, images=("sub/a.jpg", "b.jpg")):
    """Two images in a folder tree; categories with non-contiguous ids (7 before 3); a crowd region."""
    for name in images:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(tmp_path / name)
    square = [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]]  # a 20x20 polygon
    crowd = {"size": [40, 50], "counts": [0, 40 * 5, 40 * 45]}  # uncompressed RLE: the first 5 columns
    content = content or {
        "images": [{"id": 100, "file_name": images[0], "height": 40, "width": 50},
                   {"id": 200, "file_name": images[1], "height": 40, "width": 50}],
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
        "annotations": [
            {"id": 1, "image_id": 100, "category_id": 3, "segmentation": square, "bbox": [10, 10, 20, 20], "iscrowd": 0},
            {"id": 2, "image_id": 100, "category_id": 7, "segmentation": crowd, "bbox": [0, 0, 5, 40], "iscrowd": 1},
            {"id": 3, "image_id": 200, "category_id": 7, "segmentation": crowd, "bbox": [0, 0, 5, 40], "iscrowd": 1},
        ],
    }  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(content))
    return path


def test_ids_labels_crowd_and_results_in_the_original_ids(tmp_path):
    ann = hand_made(tmp_path)
    data = COCODataset(tmp_path, ann)
    assert data.classes == ("seven", "three") and data.image_ids == ["sub/a.jpg", "b.jpg"]
    assert data.labels("sub/a.jpg").tolist() == [0.0, 1.0]  # the crowd "seven" is no label
    training = COCODataset(tmp_path, ann, training=True)
    assert training.image_ids == ["sub/a.jpg"] and training.skipped == 1  # b.jpg holds only crowd
    inst = data.instances("sub/a.jpg")
    assert inst.classes.tolist() == [2] and inst.masks[0].sum() == 400 and inst.boxes.tolist() == [[10, 10, 30, 30]]
    assert inst.void[:, :5].all() and inst.void.sum() == 200  # crowd regions are void for our metrics
    classes, boxes, ignore = data.objects("sub/a.jpg")
    assert classes.tolist() == [2, 1] and ignore.tolist() == [False, True]
    det = {"sub/a.jpg": Detections(inst.boxes, inst.classes, torch.tensor([0.9]), inst.masks)}
    (entry,) = evaluation.to_coco(det, data)
    assert entry["image_id"] == 100 and entry["category_id"] == 3
    results = tmp_path / "results.json"
    results.write_text(json.dumps([entry]))
    back = evaluation.from_coco(results, data)
    assert back["sub/a.jpg"].classes.tolist() == [2] and torch.equal(back["sub/a.jpg"].masks, inst.masks)
    assert len(back["b.jpg"].classes) == 0
    m = evaluation.score(back, data, None, None)
    assert m["mAP@0.5"] == pytest.approx(100.0) and m["coco"]["segm"]["AP50"] == pytest.approx(100.0)
    entry["category_id"] = 5
    results.write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match="category_id 5"):
        evaluation.from_coco(results, data)


def test_proposals_are_cached_by_file_name_folders_included(tmp_path):
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    ann = hand_made(tmp_path)
    folder = proposals.compute(tmp_path, str(ann), jobs=1, progress=False)
    assert (folder / "sub" / "a.jpg.npy").is_file() and (folder / "b.jpg.npy").is_file()
    assert proposals.load(tmp_path, "sub/a.jpg").shape[1] == 4


@pytest.mark.parametrize(
    "change,match",
    [
        ("not json", "not a readable JSON file"),
        ({"images": []}, "needs the lists 'images', 'annotations' and 'categories'"),
        (lambda c: c["annotations"][0].update(image_id=999), r"annotations\[0\] \(id 1\) names image_id 999"),
        (lambda c: c["annotations"][1].update(category_id=4), r"annotations\[1\] \(id 2\) names category_id 4"),
        (lambda c: c["images"][1].update(file_name="../b.jpg"), "must be a relative path"),
        (lambda c: c["images"][1].pop("height"), r"images\[1\] needs"),
        (lambda c: c["categories"].append({"id": 7, "name": "again"}), "distinct ids"),
    ],
)
def test_a_bad_annotation_file_is_an_error_naming_it_and_the_entry(tmp_path, change, match):
    path = hand_made(tmp_path)
    if isinstance(change, str):
        path.write_text(change)
    elif isinstance(change, dict):
        path.write_text(json.dumps(change))
    else:
        content = json.loads(path.read_text())
        change(content)
        path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as e:
        COCODataset(tmp_path, path)
    assert str(path) in str(e.value)


def test_missing_images_and_undecodable_segmentations_are_found_before_training(tmp_path):
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    path = hand_made(tmp_path)
    content = json.loads(path.read_text())
    content["annotations"].append({"id": 9, "image_id": 200, "category_id": 3, "segmentation": {"size": [40, 50],
                                   "counts": "%%%"}, "bbox": [0, 0, 1, 1]})  # fmt: skip
    path.write_text(json.dumps(content))
    proposals.compute(tmp_path, str(path), jobs=1, progress=False)
    (tmp_path / "sub" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image not found: .*sub/a\.jpg \(.*ann\.json, image id 100\)"):
        COCODataset(tmp_path, path).image_path("sub/a.jpg")
    with pytest.raises(BadData) as e:
        scan(tmp_path, str(path), progress=False)
    assert "sub/a.jpg: cannot decode" in str(e.value)
    assert "the segmentation of annotation id 9 (image b.jpg) cannot be decoded" in str(e.value)


def test_train_and_evaluate_on_a_coco_split(tiny_root, tmp_path):
    needs_timm()
    root = tmp_path / "d"
    shutil.copytree(tiny_root, root, ignore=shutil.ignore_patterns("proposals"))
    train_json = voc_to_coco(VOCDataset(root, "train"), root / "annotations" / "train.json")
    val_json = voc_to_coco(VOCDataset(root, "val"), root / "annotations" / "val.json")
    from wsis import train

    run = train.run(tiny_config(root, tmp_path / "run", f"data.train_split={train_json}", f"data.val_split={val_json}"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["coco"]) == {"segm", "bbox"} and "mAP@0.5" in metrics
    predictions = json.loads((run / "predictions.json").read_text())
    coco = COCODataset(root, val_json)
    assert {p["image_id"] for p in predictions} <= {coco.result_image_id(i) for i in coco.image_ids}
    assert predictions and all(isinstance(p["image_id"], int) for p in predictions)
    # rescoring the predictions file through the CLI
    evaluate.main(["--predictions", str(run / "predictions.json"), "--data", str(root), "--split", str(val_json),
                   "--out", str(tmp_path / "rescored")])  # fmt: skip
    rescored = json.loads((tmp_path / "rescored" / "metrics.json").read_text())
    assert rescored["mAP@0.5"] == pytest.approx(metrics["mAP@0.5"])
    assert rescored["coco"]["segm"]["AP"] == pytest.approx(metrics["coco"]["segm"]["AP"])


def test_exports_without_area_bbox_or_iscrowd_still_score(tmp_path):
    path = hand_made(tmp_path)
    content = json.loads(path.read_text())
    for a in content["annotations"]:
        a.pop("bbox"), a.pop("iscrowd")
    content["annotations"] = content["annotations"][:1]  # without iscrowd the crowd entries would be objects
    path.write_text(json.dumps(content))
    data = COCODataset(tmp_path, path)
    assert data.objects("sub/a.jpg")[1].tolist() == [[10, 10, 30, 30]]  # the polygon's box
    inst = data.instances("sub/a.jpg")
    m = evaluation.score({"sub/a.jpg": Detections(inst.boxes, inst.classes, torch.tensor([0.9]), inst.masks)}, data,
                       None, None)  # fmt: skip
    assert m["coco"]["segm"]["AP50"] == pytest.approx(100.0) and m["coco"]["bbox"]["AP50"] == pytest.approx(100.0)


def test_annotations_without_geometry_train_and_boxes_without_masks_score_boxes_only(tmp_path):
    """Image-level tags (no bbox, no segmentation) and boxes without masks, as users export them."""
    from wsis.evaluation.scoring import score, whole_image_detections

    path = hand_made(tmp_path)
    content = json.loads(path.read_text())
    for a in content["annotations"]:
        a.pop("segmentation")
    path.write_text(json.dumps(content))
    boxes = COCODataset(tmp_path, path)
    assert boxes.has_boxes and not boxes.has_masks and boxes.instances("sub/a.jpg") is None
    assert boxes.objects("sub/a.jpg")[1].tolist()[0] == [10, 10, 30, 30]
    m = score(whole_image_detections(boxes), boxes, None, None)
    assert m["masks_scored"] is False and "segm" not in m["coco"] and "bbox" in m["coco"]
    for a in content["annotations"]:
        a.pop("bbox")
    path.write_text(json.dumps(content))
    tags = COCODataset(tmp_path, path, training=True)
    assert tags.image_ids == ["sub/a.jpg"] and tags.labels("sub/a.jpg").tolist() == [0, 1]
    tags.check("sub/a.jpg")  # trains
    with pytest.raises(ValueError, match="neither a 'bbox' nor a 'segmentation'.*cannot be scored"):
        tags.check("sub/a.jpg", ground_truth=True)
