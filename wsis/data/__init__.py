"""Data sets in PASCAL VOC format (DESIGN §4, §6): the reader and the synthetic generator."""
from .voc import VOC_CLASSES, Instances, VOCDataset

__all__ = ["VOC_CLASSES", "Instances", "VOCDataset"]
