"""One entry point for a split in either format: a split that names a `.json` file is a COCO-format
split (`data.root` is then its image folder), any other is a VOC `ImageSets/Segmentation` list."""
from pathlib import Path
from typing import Union

from .coco import COCODataset
from .voc import VOCDataset


def is_coco(split: str) -> bool:
    return str(split).lower().endswith(".json")


def open_split(root: Union[str, Path], split: str, training: bool = False) -> Union[VOCDataset, COCODataset]:
    """The reader of `split`; `training=True` leaves out images without labels (COCO)."""
    if is_coco(split):
        return COCODataset(root, split, training)
    return VOCDataset(root, split)
