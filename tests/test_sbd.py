import numpy as np
import pytest
import torch

from wsis.data import VOCDataset
from wsis.data.sbd import SBDDataset, trainaug_ids, write_trainaug

scipy_io = pytest.importorskip("scipy.io")


def _sbd_tree(root):
    (root / "dataset" / "inst").mkdir(parents=True)
    (root / "dataset" / "cls").mkdir()
    (root / "dataset" / "train.txt").write_text("2008_000002\n2008_000003\n")
    (root / "dataset" / "val.txt").write_text("2008_000004\n")
    inst = np.zeros((5, 6), np.uint8)
    inst[0:2, 0:3] = 1
    inst[3:5, 2:6] = 2
    cls = np.where(inst == 1, 15, np.where(inst == 2, 12, 0)).astype(np.uint8)
    scipy_io.savemat(root / "dataset" / "inst" / "2008_000002.mat",
                     {"GTinst": {"Segmentation": inst, "Categories": np.array([[15], [12]], np.uint8)}})  # fmt: skip
    scipy_io.savemat(root / "dataset" / "cls" / "2008_000002.mat",
                     {"GTcls": {"Segmentation": cls, "CategoriesPresent": np.array([12, 15])}})  # fmt: skip
    return inst


def test_sbd_reads_back_exactly(tmp_path):
    inst = _sbd_tree(tmp_path)
    data = SBDDataset(tmp_path, "train")
    assert data.image_ids == ["2008_000002", "2008_000003"]
    got = data.instances("2008_000002")
    assert got.classes.tolist() == [15, 12]
    assert torch.equal(got.masks[0], torch.from_numpy(inst == 1)) and torch.equal(got.masks[1], torch.from_numpy(inst == 2))
    assert got.boxes.tolist() == [[0, 0, 3, 2], [2, 3, 6, 5]]
    assert torch.nonzero(data.labels("2008_000002")).flatten().tolist() == [11, 14]
    with pytest.raises(FileNotFoundError, match="2008_000003.mat"):
        data.instances("2008_000003")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        SBDDataset(tmp_path, "test")


def test_trainaug_split(tmp_path):
    voc, sbd = tmp_path / "voc", tmp_path / "sbd"
    _sbd_tree(sbd)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n2008_000002\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2008_000003\n")
    ids = trainaug_ids(voc, sbd)
    assert ids == ["2007_000001", "2008_000002", "2008_000004"]  # 2008_000003 is VOC seg val: out
    with pytest.raises(FileNotFoundError, match="no annotation"):
        write_trainaug(voc, sbd)
    (voc / "Annotations").mkdir()
    for i in ids:
        (voc / "Annotations" / f"{i}.xml").write_text("<annotation><object><name>dog</name><bndbox><xmin>1</xmin>"
                                                     "<ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>")  # fmt: skip
    write_trainaug(voc, sbd)
    data = VOCDataset(voc, "trainaug")
    assert data.image_ids == ids and data.labels("2008_000004")[11] == 1


def test_trainaug_command_line(tmp_path, capsys):
    from wsis.data import sbd as sbd_module

    voc, sbd = tmp_path / "voc", tmp_path / "sbd"
    _sbd_tree(sbd)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2008_000003\n")
    with pytest.raises(SystemExit) as e:  # no annotations yet: a clear error, exit 1
        sbd_module.main(["--voc", str(voc), "--sbd", str(sbd)])
    assert e.value.code == 1 and "no annotation" in capsys.readouterr().err
    (voc / "Annotations").mkdir()
    for i in ("2007_000001", "2008_000002", "2008_000004"):
        (voc / "Annotations" / f"{i}.xml").write_text("<annotation></annotation>")
    sbd_module.main(["--voc", str(voc), "--sbd", str(sbd)])
    assert "trainaug: 3 images listed in" in capsys.readouterr().out
    assert (voc / "ImageSets" / "Segmentation" / "trainaug.txt").read_text().split() == [
        "2007_000001", "2008_000002", "2008_000004"]
