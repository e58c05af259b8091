"""One entry point for a split in any format: a split that names a `.csv` file, or a `.json` file
that is not COCO's, is a tags-only split (`wsis.data.tags`; `data.root` is its image folder); a
split that names another `.json` file is a COCO-format split (`data.root` is then its image
folder); in a root that holds `data.yaml` a split is one of that file's (the Ultralytics YOLO
layout); any other is a VOC list (`ImageSets/Segmentation`, else `ImageSets/Main`)."""
from pathlib import Path
from typing import Union

import torch

from .coco import COCODataset
from .tags import TagsDataset, is_tags_file
from .voc import Instances, VOCDataset
from .yolo import VOC_NAMES_IN_COCO, YOLODataset, is_yolo_root


def is_coco(split: str) -> bool:
    return str(split).lower().endswith(".json") and not is_tags_file(split)


def open_split(root: Union[str, Path], split: str, training: bool = False, classes: str = "",
               negatives: bool = False) -> Union[VOCDataset, COCODataset, YOLODataset, TagsDataset]:  # fmt: skip
    """The reader of `split`; `training=True` leaves out images without labels (COCO, YOLO, tags)
    unless `negatives` (`data.negatives`) keeps them with all-zero labels; `classes`
    (`data.classes`) selects the classes of a YOLO root or names those of a tags file. A VOC or
    COCO split read for its ground truth keeps its own classes: the scoring maps them onto the
    model's by name (`ClassesByName`), so a run on tags with `data.classes` scores on a VOC list."""
    if is_tags_file(split):
        return TagsDataset(root, split, training, classes, negatives)
    if is_yolo_root(root) and not is_coco(split):
        return YOLODataset(root, split, training and not negatives, classes)
    if classes and training:
        raise ValueError(f"data.classes={classes!r} selects the classes of a YOLO-format root (one with data.yaml) "
                         f"or names those of a tags file; {root} with split {split!r} is neither")  # fmt: skip
    return COCODataset(root, split, training and not negatives) if is_coco(split) else VOCDataset(root, split)


class ClassesByName:
    """A split's reader seen through another list of classes (a checkpoint's, in its order): the
    split's ground truth is mapped onto it by name, COCO's and VOC's names of one class matching
    (`dining table` and `diningtable`). The split's classes the list lacks (`unscored`) are left out
    of the ground truth; the list's classes the split lacks (`absent`) have none, so the metrics'
    means leave them out. COCO's own evaluator is not run through it (`coco_api` is None)."""

    coco_api = None

    def __init__(self, data, classes):
        self._data, self.classes = data, tuple(classes)
        own = {_canonical(n): i + 1 for i, n in enumerate(self.classes)}
        self._to_ours = torch.tensor([0] + [own.get(_canonical(n), 0) for n in data.classes], dtype=torch.int64)
        self._to_theirs = torch.zeros(len(self.classes) + 1, dtype=torch.int64)
        for theirs, ours in enumerate(self._to_ours.tolist()):
            if ours:
                self._to_theirs[ours] = theirs
        self.unscored = [n for n, ours in zip(data.classes, self._to_ours[1:].tolist()) if not ours]
        self.absent = [n for n, theirs in zip(self.classes, self._to_theirs[1:].tolist()) if not theirs]

    def __getattr__(self, name):  # image ids, paths, sizes, files, result image ids: the split's own
        return getattr(self._data, name)

    def __len__(self) -> int:
        return len(self._data)

    def _keep(self, classes: torch.Tensor):
        ours = self._to_ours[classes]
        return ours, ours > 0

    def labels(self, image_id: str) -> torch.Tensor:
        out = torch.zeros(len(self.classes))
        theirs = torch.nonzero(self._data.labels(image_id)).flatten() + 1
        ours = self._to_ours[theirs]
        out[ours[ours > 0] - 1] = 1
        return out

    def objects(self, image_id: str):
        classes, boxes, ignore = self._data.objects(image_id)
        ours, keep = self._keep(classes)
        return ours[keep], boxes[keep], ignore[keep]

    def instances(self, image_id: str) -> Instances:
        inst = self._data.instances(image_id)
        if inst is None:  # a split with boxes only
            return None
        ours, keep = self._keep(inst.classes)
        return Instances(inst.masks[keep], ours[keep], inst.boxes[keep], inst.void)

    def result_category_id(self, index: int):
        theirs = int(self._to_theirs[index])
        return self._data.result_category_id(theirs) if theirs else self.classes[index - 1]

    def category_index(self, result_category_id) -> int:
        return int(self._to_ours[self._data.category_index(result_category_id)])


def _canonical(name: str) -> str:
    return VOC_NAMES_IN_COCO.get(name, name)


def with_classes(data, classes):
    """`data` itself where its classes are `classes`, else a `ClassesByName` view of it."""
    return data if list(data.classes) == list(classes) else ClassesByName(data, classes)
