"""The kernels of wsis (docs/DESIGN.md §2): compiled C++/CUDA ops with autograd and fake kernels."""
from ._backend import backend, get_backend, set_backend
from .boxes import batched_nms, box_iou, multiclass_nms, nms
from .cam import cam_pseudo_masks, weighted_gap
from .oicr import cluster_seed_assign, multi_seed_assign, oicr_assign
from .roi_pool import RoIPool, roi_pool, rois_from_boxes

__all__ = [
    "backend",
    "batched_nms",
    "box_iou",
    "cam_pseudo_masks",
    "cluster_seed_assign",
    "get_backend",
    "multiclass_nms",
    "multi_seed_assign",
    "nms",
    "oicr_assign",
    "roi_pool",
    "RoIPool",
    "rois_from_boxes",
    "set_backend",
    "weighted_gap",
]
