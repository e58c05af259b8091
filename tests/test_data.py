import filecmp
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import hand_written_voc
from wsis.data import VOCDataset
from wsis.data import synthetic as synthetic_module
from wsis.data.palette import read_indexed_png, voc_palette
from wsis.data.synthetic import CLASSES, Settings, generate, main

SMALL = dict(num_train=8, num_val=4, min_image=96, max_image=128, min_object=24, max_object=60)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "data", Settings(**SMALL), progress=False)


def test_same_seed_same_bytes(synthetic, tmp_path):
    again = generate(tmp_path / "again", Settings(**SMALL), progress=False)
    files = sorted(p.relative_to(synthetic) for p in synthetic.rglob("*") if p.is_file())
    assert len(files) == 4 * 12 + 4  # 4 files an image, 2 splits, classes.txt, synthetic.json
    for f in files:
        assert filecmp.cmp(synthetic / f, again / f, shallow=False), f
    other = generate(tmp_path / "other", Settings(**{**SMALL, "seed": 1}), progress=False)
    assert not filecmp.cmp(synthetic / "JPEGImages/syn_000000.jpg", other / "JPEGImages/syn_000000.jpg", shallow=False)


def test_a_pool_writes_the_same_bytes(synthetic, tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic_module, "POOL_FROM", 1)
    pooled = generate(tmp_path / "pooled", Settings(**SMALL), progress=False, processes=2)
    files = sorted(p.relative_to(synthetic) for p in synthetic.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(pooled) for p in pooled.rglob("*") if p.is_file())
    for f in files:
        assert filecmp.cmp(synthetic / f, pooled / f, shallow=False), f


def test_masks_boxes_and_labels_agree(synthetic):
    for split, n in (("train", 8), ("val", 4)):
        data = VOCDataset(synthetic, split)
        assert data.classes == CLASSES and len(data) == n
        for image_id in data.image_ids:
            root = ET.parse(synthetic / "Annotations" / f"{image_id}.xml").getroot()
            names = [o.find("name").text for o in root.findall("object")]
            inst = data.instances(image_id)
            assert 1 <= len(names) <= 4 and len(inst.masks) == len(names)
            assert [CLASSES[c - 1] for c in inst.classes] == names  # instance i+1 is XML object i
            labels = data.labels(image_id)
            assert set(torch.nonzero(labels).flatten().tolist()) == {c - 1 for c in inst.classes.tolist()}
            with Image.open(data.image_path(image_id)) as im:
                assert (im.height, im.width) == inst.void.shape
            # XML boxes (1-based inclusive) are the tight boxes of the annotated instance pixels
            xml_boxes = [[float(o.find("bndbox").find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")]
                         for o in root.findall("object")]  # fmt: skip
            assert torch.equal(inst.boxes, torch.tensor(xml_boxes) - torch.tensor([1.0, 1.0, 0.0, 0.0]))
            assert not (inst.masks.any(0) & inst.void).any()
            assert (inst.masks.sum((1, 2)) > 0).all()


def test_same_class_instances_touch_in_a_good_share(tmp_path):
    data = VOCDataset(generate(tmp_path / "d", Settings(**{**SMALL, "num_train": 40}), progress=False), "train")
    touching = 0
    for image_id in data.image_ids:
        inst = data.instances(image_id)
        grown = inst.masks | inst.void.unsqueeze(0)  # the void band sits between touching instances
        for i in range(len(inst.masks)):
            for j in range(i + 1, len(inst.masks)):
                if inst.classes[i] == inst.classes[j]:
                    a = torch.nn.functional.max_pool2d(inst.masks[i][None, None].float(), 5, 1, 2)[0, 0] > 0
                    if (a & grown[j]).any():
                        touching += 1
                        break
            else:
                continue
            break
    assert touching / len(data) >= 0.2, touching


def test_cli_writes_then_reuses(tmp_path, capsys):
    args = ["--out", str(tmp_path / "d"), "--num-train", "2", "--num-val", "1", "--min-image", "64", "--max-image",
            "64", "--min-object", "16", "--max-object", "32"]  # fmt: skip
    main(args)
    stamp = (tmp_path / "d" / "synthetic.json").stat().st_mtime_ns
    main(args)  # same settings: kept as is
    assert (tmp_path / "d" / "synthetic.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit):
        main(args[:-1] + ["30"])  # other settings into the same folder
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change,match",
    [
        ({"max_object": 500}, "max_object"),
        ({"touch_prob": 2.0}, "touch_prob"),
        ({"max_instances": 0}, "max_instances"),
        ({"min_object": 16, "void_width": 2}, "void_width"),
    ],
)
def test_bad_settings(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        generate(tmp_path / "d", Settings(**{**SMALL, **change}), progress=False)


def test_voc_tree_reads_back_exactly(tmp_path):
    objects = hand_written_voc(tmp_path)
    data = VOCDataset(tmp_path, "val")
    assert len(data.classes) == 20 and data.image_ids == ["2007_000001"]
    labels = data.labels("2007_000001")
    assert torch.nonzero(labels).flatten().tolist() == [11, 14]  # dog, person
    inst = data.instances("2007_000001")
    assert inst.classes.tolist() == [12, 15]
    assert torch.equal(inst.masks[0], torch.from_numpy(objects == 1))
    assert torch.equal(inst.masks[1], torch.from_numpy(objects == 2))
    assert inst.void.nonzero().tolist() == [[0, 0]]
    assert inst.boxes.tolist() == [[0, 1, 3, 4], [4, 0, 8, 6]]
    from wsis.data.voc import read_annotation

    ids, boxes, difficult = read_annotation(tmp_path / "Annotations" / "2007_000001.xml", data.classes)
    assert boxes.tolist() == [[0, 1, 3, 4], [4, 0, 8, 6]] and difficult.tolist() == [False, True]
    assert voc_palette()[3:6] == [128, 0, 0] and voc_palette()[15 * 3 : 16 * 3] == [192, 128, 128]


def test_bad_files_are_named(tmp_path):
    hand_written_voc(tmp_path)
    data = VOCDataset(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="2007_000002.jpg"):
        data.image_path("2007_000002")
    with pytest.raises(FileNotFoundError, match="2007_000002.xml"):
        data.labels("2007_000002")
    with pytest.raises(ValueError, match="unknown class name 'dog'"):
        VOCDataset(tmp_path, "val", classes=("dragon",)).labels("2007_000001")
    (tmp_path / "SegmentationClass" / "2007_000001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="SegmentationClass"):
        data.instances("2007_000001")
    Image.fromarray(np.zeros((6, 8), np.uint8), mode="L").save(tmp_path / "SegmentationObject" / "2007_000001.png")
    with pytest.raises(ValueError, match="mode P"):
        read_indexed_png(tmp_path / "SegmentationObject" / "2007_000001.png")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        VOCDataset(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="root not found"):
        VOCDataset(tmp_path / "nowhere", "val")


def test_config_synthetic_knobs_reach_the_generator_and_pick_their_own_folder(tmp_path, monkeypatch):
    from wsis import config as config_lib
    from wsis.data.prepare import prepare, synthetic_root

    monkeypatch.chdir(tmp_path)
    small = ["data.synthetic.num_train=3", "data.synthetic.num_val=2", "data.synthetic.min_image=64",
             "data.synthetic.max_image=80", "data.synthetic.min_object=16", "data.synthetic.max_object=40"]  # fmt: skip
    a = config_lib.load(None, small).data
    b = config_lib.load(None, [*small, "data.synthetic.seed=1"]).data
    assert synthetic_root(a) != synthetic_root(b) and synthetic_root(a).parent.name == "data"
    root = prepare(a, [], progress=False)
    assert root == synthetic_root(a) and len(VOCDataset(root, "train")) == 3 and len(VOCDataset(root, "val")) == 2
    assert synthetic_root(config_lib.load(None, [*small, "data.synthetic_dir=mine"]).data).name == "mine"


def _copy_split(src, dst):
    shutil.copytree(src, dst)
    for stamp in dst.glob("proposals/*/.scan-*.json"):
        stamp.unlink()
    return dst


def test_scan_passes_a_good_split_once_then_remembers(tiny_root, tmp_path, monkeypatch):
    from wsis.data import scan

    root = _copy_split(tiny_root, tmp_path / "d")
    scan.scan(root, "train", progress=False)
    monkeypatch.setattr(scan, "_check_image", lambda path: (_ for _ in ()).throw(AssertionError("scanned again")))
    scan.scan(root, "train", progress=False)  # unchanged files: the stamp skips the scan
    (root / "Annotations" / f"{VOCDataset(root, 'train').image_ids[0]}.xml").touch()  # a changed file: scanned again
    with pytest.raises(AssertionError, match="scanned again"):
        scan.scan(root, "train", progress=False)


def test_scan_names_every_bad_file_before_training(tiny_root, tmp_path):
    from wsis.data import proposals, scan

    root = _copy_split(tiny_root, tmp_path / "d")
    ids = VOCDataset(root, "train").image_ids
    jpg = root / "JPEGImages" / f"{ids[0]}.jpg"
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 2])  # truncated
    (root / "Annotations" / f"{ids[1]}.xml").write_text("<annotation><object>")  # does not parse
    folder = proposals.cache_dir(root, "fast")
    np.save(folder / f"{ids[2]}.npy", np.load(folder / f"{ids[2]}.npy") * 10)  # another image's boxes
    (folder / f"{ids[3]}.npy").unlink()
    with pytest.raises(scan.BadData) as e:
        scan.scan(root, "train", progress=False)
    message = str(e.value)
    assert message.startswith("4 problem(s) in the train split")
    for path, why in [(jpg, "cannot decode"), (root / "Annotations" / f"{ids[1]}.xml", "not a valid VOC annotation"),
                      (folder / f"{ids[2]}.npy", "the proposals of another image"), (folder / f"{ids[3]}.npy", "missing")]:  # fmt: skip
        assert f"{path}" in message and why in message, (path, message)
    assert not list(folder.glob(".scan-*.json"))  # a failed scan is not remembered


def test_the_ground_truth_scan_reads_the_masks_that_evaluation_reads(tiny_root, tmp_path):
    from wsis.data import scan

    root = _copy_split(tiny_root, tmp_path / "d")
    ids = VOCDataset(root, "val").image_ids
    broken = root / "SegmentationObject" / f"{ids[0]}.png"
    broken.write_bytes(b"not a png")
    (root / "SegmentationClass" / f"{ids[1]}.png").unlink()
    scan.scan(root, "val", progress=False)  # training reads no masks
    with pytest.raises(scan.BadData) as e:
        scan.scan(root, "val", progress=False, ground_truth=True)
    message = str(e.value)
    assert message.startswith("2 problem(s) in the val split")
    assert f"{broken}: cannot read the mask" in message and f"SegmentationClass/{ids[1]}.png" in message
    shutil.copy(tiny_root / "SegmentationObject" / f"{ids[0]}.png", broken)
    shutil.copy(tiny_root / "SegmentationClass" / f"{ids[1]}.png", root / "SegmentationClass")
    assert len(scan.scan(root, "val", progress=False, ground_truth=True)) == len(ids)


def test_train_stops_on_bad_data_before_the_first_iteration(tiny_root, tmp_path):
    from conftest import tiny_config
    from wsis import train
    from wsis.data.scan import BadData

    root = _copy_split(tiny_root, tmp_path / "d")
    image_id = VOCDataset(root, "train").image_ids[-1]
    (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadData, match=f"{image_id}.jpg: cannot decode"):
        train.run(tiny_config(root, tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_stops_on_bad_ground_truth_of_its_val_split_before_the_first_iteration(tiny_root, tmp_path):
    from conftest import needs_timm, tiny_config
    from wsis import train
    from wsis.data.scan import BadData

    root = _copy_split(tiny_root, tmp_path / "d")
    png = root / "SegmentationObject" / f"{VOCDataset(root, 'val').image_ids[-1]}.png"
    png.write_bytes(b"not a png")
    with pytest.raises(BadData, match=f"{png}: cannot read the mask"):
        train.run(tiny_config(root, tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    needs_timm()
    train.run(tiny_config(root, tmp_path / "run2", "evaluate=false"))  # no evaluation, no need of its masks
