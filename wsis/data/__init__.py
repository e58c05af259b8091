"""Data sets in PASCAL VOC and COCO format (docs/DESIGN.md §4, §6): the readers and the synthetic generator."""
from .coco import COCODataset
from .formats import open_split
from .voc import VOC_CLASSES, Instances, VOCDataset

__all__ = ["COCODataset", "VOC_CLASSES", "Instances", "VOCDataset", "open_split"]
