"""VOC 2007's layout (detection lists, boxes only), tags-only labels files, and the splits a run
reads checked before it trains."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import needs_timm, tiny_config
from wsis.data import VOCDataset
from wsis.data.formats import is_coco, open_split
from wsis.data.tags import TagsDataset, is_tags_file
from wsis.data.tags_from_voc import write_from_voc
from wsis.evaluation import metrics as M
from wsis.evaluation.scoring import score, table, whole_image_detections

VOC2007 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "voc2007"
NO_VOC2007 = "the VOC 2007 photos (shared/data/voc2007 beside the checkout) are not on this machine"


def voc2007_like(root: Path) -> Path:
    """A VOC 2007-style tree: ImageSets/Main lists, XML boxes (one difficult), no segmentation PNGs."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    objects = {"000005": [("chair", 0, (3, 4, 20, 30)), ("person", 1, (30, 2, 60, 40))],
               "000007": [("car", 0, (1, 1, 64, 48))]}  # fmt: skip
    for image_id, objs in objects.items():
        Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        xml = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                      f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, d, b in objs)  # fmt: skip
        (root / "Annotations" / f"{image_id}.xml").write_text(f"<annotation>{xml}</annotation>")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000005\n000007\n")
    (root / "ImageSets" / "Main" / "person_trainval.txt").write_text("000005  1\n000007 -1\n")  # VOC's per-class lists
    return root


# ---- VOC 2007 ---------------------------------------------------------------------------------------
def test_a_voc2007_tree_reads_its_main_lists_and_has_boxes_only(tmp_path):
    data = VOCDataset(voc2007_like(tmp_path / "voc07"), "trainval")
    assert data.image_ids == ["000005", "000007"] and not data.has_masks
    assert data.instances("000005") is None
    classes, boxes, difficult = data.objects("000005")
    assert classes.tolist() == [9, 15] and difficult.tolist() == [False, True]
    assert data.labels("000005")[[8, 14]].tolist() == [1, 1]  # image labels keep the difficult person
    assert data.files("000005", ground_truth=True) == data.files("000005")  # no masks for the scan to read


def test_a_split_that_is_in_neither_list_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"split 'trainaug' not found.*Segmentation/trainaug.txt.*Main/trainaug.txt"):
        VOCDataset(voc2007_like(tmp_path / "voc07"), "trainaug")


def test_boxes_only_splits_score_the_boxes_and_say_the_masks_are_not_scored(tmp_path):
    data = VOCDataset(voc2007_like(tmp_path / "voc07"), "trainval")
    m = score(whole_image_detections(data), data, None, None)
    assert m["masks_scored"] is False and all(np.isnan(m[k]) for k in ("mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO"))
    # chair: the whole image (0, 0, 64, 48) against (2, 3, 20, 30) misses; car hits; person's only box is
    # difficult, and WSOD's CorLoc counts it: the whole image misses it
    assert m["per_class"]["CorLoc"]["car"] == 100 and m["per_class"]["CorLoc"]["chair"] == 0
    assert m["per_class"]["CorLoc"]["person"] == 0 and m["CorLoc"] == pytest.approx(100 / 3)
    assert m["det_mAP@0.5"] == pytest.approx(50.0) and m["det_mAP@0.5_11pt"] == pytest.approx(50.0)
    assert "mask figures are not scored" in table(m)


def test_a_boxes_only_split_seen_through_another_models_classes_scores_its_boxes(tmp_path):
    from wsis.data.formats import with_classes

    data = with_classes(VOCDataset(voc2007_like(tmp_path / "voc07"), "trainval"), ["person", "car", "dog"])
    assert data.instances("000005") is None
    m = score(whole_image_detections(data), data, None, None)
    assert m["masks_scored"] is False and m["per_class"]["CorLoc"]["car"] == 100


def test_the_ground_truth_of_a_boxes_only_split_is_drawn_as_boxes(tmp_path):
    from wsis.visualize import save_comparisons

    data = VOCDataset(voc2007_like(tmp_path / "voc07"), "trainval")
    (picture,) = save_comparisons(whole_image_detections(data), data, ["000005"], tmp_path / "pictures")
    with Image.open(picture) as im:
        assert im.size == (2 * 64 + 4, 48)


def test_corloc_counts_an_image_whose_only_box_of_the_class_is_difficult():
    hit = M.ImageResult("a", np.array([1]), np.array([0.9]), np.array([[0.0, 0, 10, 10]]), np.array([1]),
                        np.array([[0.0, 0, 10, 10]]), np.array([True]))  # fmt: skip
    assert M.corloc([hit], 1)["CorLoc"] == 100


def test_the_11_point_ap_of_voc2007_beside_the_area_ap():
    tp, scores = np.array([True, False, True]), np.array([0.9, 0.8, 0.7])
    assert M.average_precision(tp, scores, 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert M.average_precision(tp, scores, 2, points=11) == pytest.approx((6 + 5 * 2 / 3) / 11)


# ---- tags-only labels ---------------------------------------------------------------------------------
def images(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), 50, np.uint8)).save(root / name)
    return root


def test_a_csv_of_tags_gives_labels_and_its_classes(tmp_path):
    root = images(tmp_path / "photos", "a.jpg", "sub/b.jpg", "c.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,labels\na.jpg,dog;person\nsub/b.jpg,cat\nc.jpg,\n")
    assert is_tags_file(str(csv)) and not is_coco(str(csv))
    data = open_split(root, str(csv), training=True)
    assert isinstance(data, TagsDataset) and data.classes == ("cat", "dog", "person")
    assert data.image_ids == ["a.jpg", "sub/b.jpg"] and data.skipped == 1  # c.jpg holds no class
    assert data.labels("a.jpg").tolist() == [0, 1, 1]
    kept = open_split(root, str(csv), training=True, negatives=True)
    assert kept.image_ids == ["a.jpg", "sub/b.jpg", "c.jpg"] and kept.labels("c.jpg").sum() == 0
    named = open_split(root, str(csv), classes="person,dog,cat,horse")
    assert named.classes == ("person", "dog", "cat", "horse") and named.labels("a.jpg").tolist() == [1, 1, 0, 0]
    assert len(data.objects("a.jpg")[1]) == 0 and data.instances("a.jpg") is None


def test_a_json_of_tags_reads_as_the_csv_does_and_coco_stays_coco(tmp_path):
    root = images(tmp_path / "photos", "a.jpg", "b.jpg")
    tags = tmp_path / "labels.json"
    tags.write_text(json.dumps({"a.jpg": ["dog", "person"], "b.jpg": ["cat"]}, indent=1))
    data = open_split(root, str(tags))
    assert isinstance(data, TagsDataset) and data.labels("a.jpg").tolist() == [0, 1, 1]
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"info": {}, "images": [], "annotations": [], "categories": []}))
    assert is_coco(str(coco)) and not is_tags_file(str(coco))


@pytest.mark.parametrize("content, match", [
    ("img,tags\na.jpg,dog\n", r"labels.csv:1: a labels CSV starts with the header line 'image,labels'"),
    ("image,labels\na.jpg,dog\n\nb.jpg,cat\n", r"labels.csv:3: an empty line"),
    ("image,labels\na.jpg,dog\nb.jpg,cat,horse\n", r"labels.csv:3: expected 'image,labels'"),
    ("image,labels\na.jpg,dog\na.jpg,cat\n", r"labels.csv:3: 'a.jpg' is listed again \(first on line 2\)"),
    ("image,labels\na.jpg,dog\nb.jpg,dgo\n", r"labels.csv:3: unknown class name\(s\) 'dgo'"),
    ("image,labels\n../a.jpg,dog\n", r"labels.csv:2: the image path '../a.jpg' must be relative"),
])  # fmt: skip
def test_each_bad_line_of_a_labels_csv_is_named_with_its_line_number(tmp_path, content, match):
    root = images(tmp_path / "photos", "a.jpg", "b.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text(content)
    with pytest.raises(ValueError, match=match):
        TagsDataset(root, csv, classes="dog,cat" if "dgo" in content else "")


def test_a_labels_json_names_its_bad_entry_and_line(tmp_path):
    root = images(tmp_path / "photos", "a.jpg", "b.jpg")
    tags = tmp_path / "labels.json"
    tags.write_text('{\n "a.jpg": ["dog"],\n "b.jpg": "cat"\n}\n')
    with pytest.raises(ValueError, match=r"labels.json:3: 'b.jpg' must map to a list of class names"):
        TagsDataset(root, tags)
    tags.write_text('{"a.jpg": ["dog"],')
    with pytest.raises(ValueError, match=r"labels.json:1: not valid JSON"):
        TagsDataset(root, tags)
    tags.write_text('{\n "a.jpg": ["dog"],\n "b.jpg": ["cat"],\n "a.jpg": ["cat"]\n}\n')
    with pytest.raises(ValueError, match=r"labels.json:4: 'a.jpg' is listed again \(first on line 2\)"):
        TagsDataset(root, tags)


def test_the_scan_names_a_missing_or_unreadable_image_of_a_labels_file(tmp_path):
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    from wsis.data.scan import BadData, scan

    root = images(tmp_path / "photos", "a.jpg")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,labels\na.jpg,dog\nmissing.jpg,cat\nbroken.jpg,cat\n")
    with pytest.raises(BadData) as e:
        scan(root, str(csv), progress=False)
    assert "missing.jpg" in str(e.value) and "broken.jpg" in str(e.value)


@pytest.mark.skipif(not VOC2007.is_dir(), reason=NO_VOC2007)
def test_tags_written_from_voc2007_give_the_voc_readers_labels(tmp_path):
    voc = VOCDataset(VOC2007, "train")
    voc.image_ids = voc.image_ids[:200]
    csv = write_from_voc(voc, tmp_path / "train.csv", VOC2007)
    tags = TagsDataset(VOC2007, csv, classes="voc")
    assert len(tags) == 200 and tags.image_ids[0] == f"JPEGImages/{voc.image_ids[0]}.jpg"
    for image_id in voc.image_ids:
        assert torch.equal(tags.labels(f"JPEGImages/{image_id}.jpg"), voc.labels(image_id))


def test_tags_written_for_some_classes_leave_the_others_out_and_name_an_unknown_one(tiny_root, tmp_path, capsys):
    from wsis.data import tags_from_voc

    voc = VOCDataset(tiny_root, "train")
    out = tmp_path / "two.csv"
    tags_from_voc.main(["--voc", str(tiny_root), "--split", "train", "--out", str(out), "--classes", "circle,ring"])
    assert "data.train_split=" in capsys.readouterr().out
    tags = TagsDataset(tiny_root, out, classes="circle,ring")
    for image_id in voc.image_ids:
        assert torch.equal(tags.labels(f"JPEGImages/{image_id}.jpg"), voc.labels(image_id)[[0, 5]])
    with pytest.raises(SystemExit):
        tags_from_voc.main(["--voc", str(tiny_root), "--out", str(out), "--classes", "circle,blob"])
    assert "unknown class name(s) 'blob'" in capsys.readouterr().err


# ---- runs ---------------------------------------------------------------------------------------------------
def test_a_run_trains_on_tags_and_scores_on_a_split_with_ground_truth(tiny_root, tmp_path):
    needs_timm()
    from wsis import train

    csv = write_from_voc(VOCDataset(tiny_root, "train"), tmp_path / "train.csv", tiny_root)
    run_dir = train.run(tiny_config(tiny_root, tmp_path / "run", f"data.train_split={csv}", "solver.max_iter=2"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 3 and metrics["masks_scored"] is True
    # the tags' classes are those the file names, sorted; the tree's are six in another order: the run
    # scores each class as itself, matched by name
    named = TagsDataset(tiny_root, csv).classes
    assert list(named) != list(VOCDataset(tiny_root, "val").classes[: len(named)])
    assert list(metrics["per_class"]["mAP@0.5"]) == list(named)


def test_a_run_on_some_classes_tags_with_negatives_scores_them_on_the_voc_split(tiny_root, tmp_path, capsys):
    """Tags of two of the six classes, `data.classes` naming them, images with neither kept as
    negatives: the run trains on every image and scores the two classes on the VOC val list."""
    needs_timm()
    from wsis import train

    voc = VOCDataset(tiny_root, "train")
    csv = write_from_voc(voc, tmp_path / "train.csv", tiny_root, keep=("circle", "ring"))
    assert any(line.endswith(",") for line in csv.read_text().splitlines()), "the tiny set has no negative for the test"
    run_dir = train.run(tiny_config(tiny_root, tmp_path / "run", f"data.train_split={csv}", "data.classes=circle,ring",
                                    "data.negatives=true", "solver.max_iter=2"))  # fmt: skip
    assert "left out" not in capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 3 and list(metrics["per_class"]["mAP@0.5"]) == ["circle", "ring"]
    assert metrics["classes_not_scored"] == ["square", "triangle", "star", "cross"]


def test_a_run_without_a_val_split_trains_saves_and_says_nothing_was_scored(tiny_root, tmp_path, capsys):
    needs_timm()
    from wsis import train

    run_dir = train.run(tiny_config(tiny_root, tmp_path / "run", "data.val_split=", "solver.max_iter=2"))
    assert (run_dir / "checkpoints" / "last.pt").is_file() and not (run_dir / "metrics.json").exists()
    assert "nothing is scored" in capsys.readouterr().out


@pytest.mark.parametrize("override, named", [
    ("test.corloc_split=trainaug", "test.corloc_split=trainaug"),
    ("data.val_split=test", "data.val_split=test"),
])  # fmt: skip
def test_a_split_the_root_lacks_stops_the_run_before_training_with_its_key(tiny_root, tmp_path, override, named):
    needs_timm()
    from wsis import train

    with pytest.raises(FileNotFoundError, match=f"{named}: not a split of"):
        train.run(tiny_config(tiny_root, tmp_path / "run", override))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_tags_file_as_the_val_split_is_refused_before_training(tiny_root, tmp_path):
    from wsis import train

    csv = write_from_voc(VOCDataset(tiny_root, "val"), tmp_path / "val.csv", tiny_root)
    with pytest.raises(ValueError, match=r"data.val_split=.*a tags-only split has no boxes or masks to score"):
        train.run_splits(tiny_config(tiny_root, tmp_path / "run", f"data.val_split={csv}"))


@pytest.mark.skipif(not VOC2007.is_dir(), reason=NO_VOC2007)
def test_a_few_iterations_on_voc2007_photos_train_and_score_their_boxes(tmp_path):
    """The smoke test on real photographs: eight VOC 2007 photos (linked, never copied), four
    iterations of the CPU default from ImageNet weights, then the boxes-only evaluation."""
    needs_timm()
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    from wsis import train

    ids = VOCDataset(VOC2007, "train").image_ids[:8]
    root = tmp_path / "voc07"
    for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml")):
        (root / sub).mkdir(parents=True)
        for i in ids:
            (root / sub / f"{i}.{ext}").symlink_to(VOC2007 / sub / f"{i}.{ext}")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(i + "\n" for i in ids))
    cfg = tiny_config(root, tmp_path / "run", "model.backbone.weights=imagenet", "data.val_split=train",
                      "data.scales=[224]", "test.scales=[224]", "test.postprocess=none")  # fmt: skip
    run_dir = train.run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["masks_scored"] is False and metrics["num_images"] == 8
    assert 0 <= metrics["CorLoc"] <= 100 and 0 <= metrics["det_mAP@0.5"] <= 100
    assert np.isnan(metrics["mAP@0.5"])


def test_a_labels_file_without_an_image_folder_is_refused_by_the_config():
    from wsis import config as config_lib

    with pytest.raises(ValueError, match="data.train_split is a COCO annotation or labels file: set data.root"):
        config_lib.load(None, ["data.train_split=my/train.csv"])
