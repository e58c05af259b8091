"""Reader of the Semantic Boundaries Dataset (SBD) and the standard `trainaug` split.

SBD: `dataset/{train,val}.txt`, `dataset/img/<id>.jpg`, `dataset/cls/<id>.mat` (struct `GTcls`,
`Segmentation` = class map) and `dataset/inst/<id>.mat` (struct `GTinst`, `Segmentation` =
instance map, `Categories` = the class of each instance). trainaug = VOC 2012 segmentation
train + SBD train + SBD val, minus VOC 2012 segmentation val (10,582 images on the real data).
Its images and XML annotations are all in VOC 2012's tree, so training reads it as the
`trainaug` split of that tree once `write_trainaug` has written the list:

    python -m wsis.data.sbd --voc VOCdevkit/VOC2012 --sbd benchmark_RELEASE
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import torch

from .voc import VOC_CLASSES, Instances, instance_masks, masks_to_boxes, read_list


class SBDDataset:
    def __init__(self, root: Union[str, Path], split: str):
        self.root = Path(root)
        self.split = split
        self.classes = VOC_CLASSES
        self.image_ids = read_list(self.root / "dataset" / f"{split}.txt", "SBD split file")

    def __len__(self) -> int:
        return len(self.image_ids)

    def _struct(self, kind: str, image_id: str, name: str):
        import scipy.io

        path = self.root / "dataset" / kind / f"{image_id}.mat"
        if not path.is_file():
            raise FileNotFoundError(f"SBD annotation not found: {path}")
        try:
            mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable .mat file: {e}") from e
        if name not in mat:
            raise ValueError(f"{path}: no struct {name!r}")
        return mat[name], path

    def instances(self, image_id: str) -> Instances:
        inst, path = self._struct("inst", image_id, "GTinst")
        seg = np.asarray(inst.Segmentation)
        categories = np.atleast_1d(np.asarray(inst.Categories, dtype=np.int64))
        ids, masks = instance_masks(seg)
        if any(i > len(categories) for i in ids):
            raise ValueError(f"{path}: instance ids {ids} but only {len(categories)} Categories")
        masks = torch.from_numpy(masks)
        classes = torch.tensor([int(categories[i - 1]) for i in ids], dtype=torch.int64)
        if len(classes) and not ((classes >= 1) & (classes <= len(self.classes))).all():
            raise ValueError(f"{path}: class ids {classes.tolist()} outside 1..{len(self.classes)}")
        # SBD marks no void pixels
        return Instances(masks, classes, masks_to_boxes(masks), torch.zeros(seg.shape, dtype=torch.bool))

    def labels(self, image_id: str) -> torch.Tensor:
        cls, _ = self._struct("cls", image_id, "GTcls")
        seg = np.asarray(cls.Segmentation)
        labels = torch.zeros(len(self.classes))
        present = [int(c) for c in np.unique(seg) if 0 < c <= len(self.classes)]
        labels[[c - 1 for c in present]] = 1
        return labels


def trainaug_ids(voc_root: Union[str, Path], sbd_root: Union[str, Path]) -> List[str]:
    """VOC 2012 seg train + SBD train + SBD val - VOC 2012 seg val, sorted."""
    def read(path: Path) -> set:
        return set(read_list(path))

    seg = Path(voc_root) / "ImageSets" / "Segmentation"
    sbd = Path(sbd_root) / "dataset"
    ids = (read(seg / "train.txt") | read(sbd / "train.txt") | read(sbd / "val.txt")) - read(seg / "val.txt")
    return sorted(ids)


def write_trainaug(voc_root: Union[str, Path], sbd_root: Union[str, Path]) -> Path:
    """Write `ImageSets/Segmentation/trainaug.txt` into the VOC tree; every image must be in it."""
    ids = trainaug_ids(voc_root, sbd_root)
    voc_root = Path(voc_root)
    missing = [i for i in ids if not (voc_root / "Annotations" / f"{i}.xml").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} trainaug images have no annotation in {voc_root / 'Annotations'} (e.g. {missing[:3]}); "
            "is this the VOC 2012 trainval tree?"
        )
    out = voc_root / "ImageSets" / "Segmentation" / "trainaug.txt"
    out.write_text("".join(i + "\n" for i in ids))
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.data.sbd",
                                     description="Write the trainaug split list into a VOC 2012 tree.")  # fmt: skip
    parser.add_argument("--voc", type=Path, required=True, help="the VOC 2012 tree (VOCdevkit/VOC2012)")
    parser.add_argument("--sbd", type=Path, required=True, help="SBD's folder, the one holding dataset/")
    args = parser.parse_args(argv)
    try:
        out = write_trainaug(args.voc, args.sbd)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"trainaug: {len(out.read_text().split())} images listed in {out}")


if __name__ == "__main__":
    main()
