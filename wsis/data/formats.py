"""One entry point for a split in any format: a split that names a `.json` file is a COCO-format
split (`data.root` is then its image folder); in a root that holds `data.yaml` a split is one of
that file's (the Ultralytics YOLO layout); any other is a VOC `ImageSets/Segmentation` list."""
from pathlib import Path
from typing import Union

from .coco import COCODataset
from .voc import VOCDataset
from .yolo import YOLODataset, is_yolo_root


def is_coco(split: str) -> bool:
    return str(split).lower().endswith(".json")


def open_split(root: Union[str, Path], split: str, training: bool = False,
               classes: str = "") -> Union[VOCDataset, COCODataset, YOLODataset]:  # fmt: skip
    """The reader of `split`; `training=True` leaves out images without labels (COCO, YOLO);
    `classes` (`data.classes`) selects the classes of a YOLO root."""
    if is_yolo_root(root) and not is_coco(split):
        return YOLODataset(root, split, training, classes)
    if classes:
        raise ValueError(f"data.classes={classes!r} selects the classes of a YOLO-format root (one with data.yaml); "
                         f"{root} with split {split!r} is not one")  # fmt: skip
    return COCODataset(root, split, training) if is_coco(split) else VOCDataset(root, split)
