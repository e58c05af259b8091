"""Evaluation as a library (docs/DESIGN.md §5): metrics, scoring a split, COCO results and COCOeval, and
the optional mask post-processing. `python -m wsis.evaluate` is a command line over it."""
from .coco import COCO_STATS, coco_metrics, from_coco, to_coco
from .postprocess import check_postprocess, make_postprocess, postprocess_detections
from .scoring import (MASK_METRICS, evaluate_model, oracle_box_metrics, oracle_table, postprocessed_metrics, score,
                      table, whole_image_detections, write)

__all__ = ["COCO_STATS", "MASK_METRICS", "check_postprocess", "coco_metrics", "evaluate_model", "from_coco",
           "make_postprocess", "oracle_box_metrics", "oracle_table", "postprocess_detections", "postprocessed_metrics",
           "score", "table", "to_coco", "whole_image_detections", "write"]
