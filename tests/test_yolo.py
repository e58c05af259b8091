"""YOLO segmentation roots: the reader, class selection, bad files found by the scan, training and
evaluating end to end, and the real photos of ../shared/data where they are present."""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pycocotools", reason="pycocotools is not installed")
cv2 = pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")

from conftest import needs_timm, tiny_config  # noqa: E402
from wsis.data.formats import open_split  # noqa: E402
from wsis.data.scan import BadData, scan  # noqa: E402
from wsis.data.voc import VOC_CLASSES, VOCDataset  # noqa: E402
from wsis.data.yolo import YOLODataset, label_path, select_classes  # noqa: E402

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128-seg"


def write_root(root: Path, names, splits: dict, yaml_extra: str = "") -> Path:
    """A YOLO root: `splits` maps a split to {image stem: (size (w, h), [label lines])}; a label list
    of None writes no label file."""
    lines = [f"path: {yaml_extra or '.'}"] + [f"{s}: images/{s}" for s in splits]
    lines += ["names:"] + [f"  {i}: {n}" for i, n in enumerate(names)] if isinstance(names, list) else [f"names: {names}"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("\n".join(lines) + "\n")
    for split, images in splits.items():
        for stem, ((w, h), labels) in images.items():
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (w, h), (120, 90, 60)).save(root / "images" / split / f"{stem}.jpg")
            if labels is not None:
                (root / "labels" / split).mkdir(parents=True, exist_ok=True)
                (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in labels))
    return root


SQUARE = "0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75"  # the middle quarter of the image


def test_ids_labels_objects_and_masks(tmp_path):
    root = write_root(tmp_path / "y", ["person", "dining table", "cat"], {"train": {
        "a": ((40, 20), [f"0 {SQUARE}", f"2 {SQUARE}"]), "b": ((40, 20), None), "c": ((40, 20), [])}})  # fmt: skip
    data = open_split(root, "train")
    assert isinstance(data, YOLODataset) and data.classes == ("person", "dining table", "cat")
    assert data.image_ids == ["images/train/a.jpg", "images/train/b.jpg", "images/train/c.jpg"]
    assert data.labels("images/train/a.jpg").tolist() == [1, 0, 1] and data.labels("images/train/b.jpg").sum() == 0
    classes, boxes, ignore = data.objects("images/train/a.jpg")
    assert classes.tolist() == [1, 3] and boxes[0].tolist() == [10, 5, 30, 15] and not ignore.any()
    inst = data.instances("images/train/a.jpg")
    assert inst.masks.shape == (2, 20, 40) and inst.masks[0, 5:15, 10:30].all() and inst.masks[0].sum() == 200
    assert inst.boxes[0].tolist() == [10, 5, 30, 15] and not inst.void.any()
    training = open_split(root, "train", training=True)
    assert training.image_ids == ["images/train/a.jpg"] and training.skipped == 2  # no label file, an empty one
    assert label_path(Path("d/images/x/images/train/a.jpg")) == Path("d/images/x/labels/train/a.txt")


def test_a_holdout_divides_a_split_and_keeps_ids_labels_and_a_read_only_root(tmp_path, capsys):
    from wsis.data import holdout

    images = {f"i{k}": ((40, 20), [f"{k % 2} {SQUARE}"]) for k in range(10)}
    root = write_root(tmp_path / "y", ["person", "cat"], {"train": images})
    root.chmod(0o555)  # the lists and the data.yaml go elsewhere
    try:
        holdout.main(["--root", str(root), "--holdout", "0.3", "--seed", "1", "--out", str(tmp_path / "h")])
    finally:
        root.chmod(0o755)
    assert "7 images to train on (split train), 3 held out (split val)" in capsys.readouterr().out
    whole = open_split(root, "train")
    train, val = open_split(tmp_path / "h", "train"), open_split(tmp_path / "h", "val")
    assert sorted(train.image_ids + val.image_ids) == whole.image_ids and not set(train.image_ids) & set(val.image_ids)
    assert all(torch.equal(val.labels(i), whole.labels(i)) for i in val.image_ids)  # the ids of the root's own data.yaml
    again = holdout.write_holdout(root, "train", tmp_path / "h2", 0.3, seed=1)
    assert again == (train.image_ids, val.image_ids)  # a function of the seed
    assert holdout.write_holdout(root, "train", tmp_path / "h3", 0.3, seed=2)[1] != val.image_ids
    with pytest.raises(SystemExit):
        holdout.main(["--root", str(root), "--holdout", "1", "--out", str(tmp_path / "h4")])
    assert "--holdout must lie in (0, 1), got 1.0" in capsys.readouterr().err


def test_class_selection_subsets_and_voc_names(tmp_path):
    names = ["person", "airplane", "dining table", "giraffe", "tv"]
    kept, index = select_classes(names, "voc")
    assert kept == VOC_CLASSES and index == {0: VOC_CLASSES.index("person") + 1, 1: 1,
                                             2: VOC_CLASSES.index("diningtable") + 1, 4: 20}  # fmt: skip
    assert select_classes(names, "tv,person") == (("tv", "person"), {4: 1, 0: 2})
    with pytest.raises(ValueError, match="data.classes.*'zebra'"):
        select_classes(names, "person,zebra")
    root = write_root(tmp_path / "y", names, {"train": {
        "a": ((40, 20), [f"3 {SQUARE}"]), "b": ((40, 20), [f"2 {SQUARE}", f"3 {SQUARE}"])}})  # fmt: skip
    data = open_split(root, "train", training=True, classes="voc")
    assert data.image_ids == ["images/train/b.jpg"]  # a's giraffe is no VOC class: a has no label left
    assert data.objects("images/train/b.jpg")[0].tolist() == [VOC_CLASSES.index("diningtable") + 1]
    with pytest.raises(ValueError, match="data.classes.*YOLO"):
        open_split(tmp_path, "train", training=True, classes="voc")  # a VOC root has no names to select from


def test_names_as_a_list_and_the_path_key(tmp_path):
    images = tmp_path / "elsewhere"
    write_root(images, ["a", "b"], {"val": {"x": ((10, 10), [f"1 {SQUARE}"])}})
    root = tmp_path / "root"  # the data.yaml and the caches here, the images where `path` says
    root.mkdir()
    (root / "data.yaml").write_text(f"path: {images}\nval: images/val\nnames: [a, b]\n")
    data = open_split(root, "val")
    assert data.classes == ("a", "b") and data.image_ids == ["images/val/x.jpg"]
    assert data.image_path("images/val/x.jpg") == images / "images" / "val" / "x.jpg"


@pytest.mark.parametrize("yaml_text,match", [
    ("names: [a]\ntrain: images/train\n", "no split 'val'; its splits are \\['train'\\]"),
    ("val: images/val\n", "'names' must be"),
    ("names: {0: a, 2: b}\nval: images/val\n", "indices 0..1"),
    ("names: [a]\nval: nowhere\n", "not a folder or a .txt list"),
    ("[1, 2\n", "not a readable YAML"),
])  # fmt: skip
def test_a_bad_data_yaml_is_an_error_naming_it(tmp_path, yaml_text, match):
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        open_split(tmp_path, "val")


def test_box_labels_train_as_image_labels_and_score_as_boxes(tmp_path):
    from wsis.evaluation.scoring import score, whole_image_detections

    root = write_root(tmp_path / "y", ["person", "cat"], {"train": {
        "a": ((40, 20), ["0 0.5 0.5 0.5 0.5", f"1 {SQUARE}"]), "b": ((40, 20), ["1 0.5 0.5 1 1"])}})  # fmt: skip
    data = open_split(root, "train", training=True)
    assert data.labels("images/train/a.jpg").tolist() == [1, 1] and not data.has_masks
    classes, boxes, _ = data.objects("images/train/a.jpg")
    assert classes.tolist() == [1, 2] and boxes[0].tolist() == [10, 5, 30, 15]  # cx cy w h in pixels
    assert data.instances("images/train/a.jpg") is None
    m = score(whole_image_detections(data), data, None, None)
    assert m["masks_scored"] is False and m["per_class"]["CorLoc"]["cat"] == 50  # b's whole-image box hits


def test_the_scan_lists_every_bad_line_with_its_path_and_line(tmp_path):
    from wsis.data import proposals

    root = write_root(tmp_path / "y", ["a", "b"], {"train": {
        "ok": ((64, 48), [f"0 {SQUARE}"]),
        "bad": ((64, 48), [f"0 {SQUARE}", "7 0.1 0.1 0.2 0.1 0.2 0.2", "1 0.1 0.1 0 0.2", "x 0.1", f"1 {SQUARE}",
                           "0 0.1 0.1 0.2 0.1 1.5 0.2", "0 0.5 0.5 0.2"])}})  # fmt: skip
    (root / "labels" / "train" / "ghost.txt").write_text(f"0 {SQUARE}\n")  # a label file without an image
    proposals.compute(root, "train", jobs=1, progress=False)
    with pytest.warns(UserWarning, match="ghost.txt: a label file without an image"):
        with pytest.raises(BadData) as e:
            scan(root, "train", progress=False)
    text = str(e.value)
    label = root / "labels" / "train" / "bad.txt"
    for line, why in [(2, "class index 7 outside the 2 names"), (3, "a box (cx cy w h) must be normalised to 0-1 with w, h > 0"),
                      (4, "not a class index"), (6, "coordinates must be normalised to 0-1"),
                      (7, "a polygon needs at least 3 x y pairs (or a box: cx cy w h), got 3")]:  # fmt: skip
        assert f"{label}, line {line}: {why}" in text
    assert "ok.txt" not in text
    (label).write_text(f"0 {SQUARE}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert scan(root, "train", progress=False).image_ids == ["images/train/bad.jpg", "images/train/ok.jpg"]


def voc_to_yolo(voc: VOCDataset, root: Path, split: str) -> None:
    """Writes a VOC-format split as a YOLO split: each instance mask's outer contours as polygons."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for image_id in voc.image_ids:
        shutil.copy(voc.image_path(image_id), root / "images" / split / f"{image_id}.jpg")
        inst = voc.instances(image_id)
        h, w = inst.void.shape
        lines = []
        for mask, cls in zip(inst.masks.numpy().astype(np.uint8), inst.classes.tolist()):
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            c = max(contours, key=cv2.contourArea).reshape(-1, 2) + 0.5
            if len(c) >= 3:
                lines.append(f"{cls - 1} " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in c))
        (root / "labels" / split / f"{image_id}.txt").write_text("\n".join(lines) + "\n")


def test_train_evaluate_and_predict_on_a_yolo_root(tiny_root, tmp_path):
    needs_timm()
    from wsis import evaluate, predict, train

    root = tmp_path / "y"
    for split in ("train", "val"):
        voc_to_yolo(VOCDataset(tiny_root, split), root, split)
    classes = VOCDataset(tiny_root, "train").classes
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [" + ", ".join(classes) + "]\n")
    val = open_split(root, "val")
    voc_val = VOCDataset(tiny_root, "val")
    cover, shift = [], []  # the outer contours hold the instances (a ring's hole too); an occluded one may lose a piece
    for y, v in zip(val.image_ids, voc_val.image_ids):
        a, b = val.instances(y), voc_val.instances(v)
        assert a.classes.tolist() == b.classes.tolist()
        cover += ((a.masks & b.masks).flatten(1).sum(1) / b.masks.flatten(1).sum(1)).tolist()
        shift += (a.boxes - b.boxes).abs().amax(1).tolist()
    assert np.median(cover) > 0.85 and np.median(shift) <= 1
    run = train.run(tiny_config(root, tmp_path / "run"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_images"] == len(val) and set(metrics["per_class"]["CorLoc"]) == set(classes)
    assert metrics["val_images_in_training"] == 0
    evaluate.main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(root), "--split", "val",
                   "--out", str(tmp_path / "again"), "test.postprocess=none"])  # fmt: skip
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["mAP@0.5"] == pytest.approx(metrics["mAP@0.5"])
    # the same photos under other names and order: classes matched by name, the same figures per class
    other = tmp_path / "other"
    shutil.copytree(root / "images", other / "images")
    order = list(reversed(classes[1:])) + ["blob"]  # the first class missing, a class the model lacks
    for split in ("train", "val"):
        (other / "labels" / split).mkdir(parents=True)
        for f in (root / "labels" / split).glob("*.txt"):
            lines = [line.split(" ", 1) for line in f.read_text().splitlines() if line.strip()]
            kept = [f"{order.index(classes[int(c)])} {rest}" for c, rest in lines if classes[int(c)] in order]
            (other / "labels" / split / f.name).write_text("".join(line + "\n" for line in kept))
    (other / "data.yaml").write_text("path: .\nval: images/val\nnames: [" + ", ".join(order) + "]\n")
    evaluate.main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(other), "--split", "val",
                   "--out", str(tmp_path / "other-eval"), "test.postprocess=none", "test.corloc_split=none"])  # fmt: skip
    mapped = json.loads((tmp_path / "other-eval" / "metrics.json").read_text())
    assert mapped["classes_not_scored"] == ["blob"] and mapped["classes_absent"] == [classes[0]]
    assert any(np.isfinite(again["per_class"]["det_mAP@0.5"][c]) for c in classes[1:])  # something to compare
    for c in classes[1:]:
        assert mapped["per_class"]["det_mAP@0.5"][c] == pytest.approx(again["per_class"]["det_mAP@0.5"][c], nan_ok=True)
        assert mapped["per_class"]["mAP@0.5"][c] == pytest.approx(again["per_class"]["mAP@0.5"][c], nan_ok=True)
    assert mapped["per_class"]["mAP@0.5"][classes[0]] is None or np.isnan(mapped["per_class"]["mAP@0.5"][classes[0]])
    with pytest.raises(SystemExit) as e:
        predict.main(["--checkpoint", str(run / "checkpoints" / "last.pt"), str(root / "images" / "val"),
                      "--out", str(tmp_path / "pictures")])  # fmt: skip
    assert e.value.code == 0
    assert len(list((tmp_path / "pictures").glob("*.png"))) == len(val)


needs_photos = pytest.mark.skipif(not COCO128.is_dir(), reason=f"the real photos are not here: {COCO128} is absent")


@needs_photos
def test_coco128_reads_as_its_readme_says(tmp_path):
    from wsis.data import holdout

    data = open_split(COCO128, "train")
    assert len(data.classes) == 80 and len(data.image_ids) == 128
    assert sum(bool(data.labels(i).any()) for i in data.image_ids) == 126
    assert sorted(p.name for p in data.orphan_labels()) == ["000000000656.txt", "000000000659.txt"]
    holdout.write_holdout(COCO128, "train", tmp_path, 0.3, seed=0)
    assert open_split(tmp_path, "val").orphan_labels() == []  # a list names its images: no folder of its own
    voc = open_split(COCO128, "train", training=True, classes="voc")
    assert len(voc.image_ids) == 97
    person = VOC_CLASSES.index("person")
    assert sum(int(voc.labels(i)[person]) for i in voc.image_ids) == 61
    assert sum(int((voc.objects(i)[0] == person + 1).sum()) for i in voc.image_ids) == 254
    inst = voc.instances(voc.image_ids[0])
    assert inst.masks.shape[0] == len(voc.objects(voc.image_ids[0])[0]) and inst.masks.flatten(1).any(1).all()


@needs_photos
def test_a_few_iterations_on_real_photos_train_and_evaluate(tmp_path):
    """Six coco128 photos with persons: the data.yaml and the caches in a folder of ours, the photos
    read where they are (shared data is read-only)."""
    needs_timm()
    from wsis import train

    data = open_split(COCO128, "train", training=True, classes="person")
    picked = data.image_ids[:6]
    root = tmp_path / "photos"
    root.mkdir()
    (root / "few.txt").write_text("".join(f"{i}\n" for i in picked))
    (root / "data.yaml").write_text(f"path: {COCO128}\ntrain: {root / 'few.txt'}\nval: {root / 'few.txt'}\n"
                                    "names: {" + ", ".join(f"{k}: '{n}'" for k, n in enumerate(data.names)) + "}\n")  # fmt: skip
    cfg = tiny_config(root, tmp_path / "run", "data.classes=person", "data.max_size=320", "data.scales=[256]",
                      "test.scales=[256]", "solver.max_iter=2")  # fmt: skip

    def shared_caches():  # a copy of the set may ship caches of its own; ours never go there
        return {sub: sorted(p.name for p in (COCO128 / sub).rglob("*")) for sub in ("proposals", "segments")
                if (COCO128 / sub).exists()}  # fmt: skip

    before = shared_caches()
    run = train.run(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_images"] == 6 and list(metrics["per_class"]["CorLoc"]) == ["person"]
    assert metrics["val_images_in_training"] == 6  # one list for both splits: the run says it is transductive
    assert all(np.isfinite(v) for k, v in metrics.items() if k in ("mAP@0.5", "det_mAP@0.5", "CorLoc"))
    assert (root / "proposals").is_dir() and shared_caches() == before
