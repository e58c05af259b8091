"""oicr_assign's rule (docs/DESIGN.md §2) in NumPy: the baseline its speed target is measured against."""
import numpy as np


def oicr_assign_numpy(boxes, scores, image_labels, fg_thresh=0.5, bg_thresh=0.1):
    free = scores.copy()
    seeds, seed_classes, seed_scores = [], [], []
    for c in np.flatnonzero(image_labels == 1):
        r = int(np.argmax(free[:, c]))
        seeds.append(r)
        seed_classes.append(c)
        seed_scores.append(scores[r, c])
        free[r, :] = -np.inf  # a seed is not eligible again
    seed_boxes = boxes[seeds]
    lt = np.maximum(boxes[:, None, :2], seed_boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], seed_boxes[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / (area[:, None] + area[seeds][None, :] - inter)
    j = iou.argmax(1)
    max_iou = iou[np.arange(len(boxes)), j]
    labels = np.where(max_iou >= fg_thresh, np.asarray(seed_classes)[j] + 1, 0)
    weights = np.where(max_iou < bg_thresh, 0, np.asarray(seed_scores, dtype=scores.dtype)[j])
    return labels, weights, np.asarray(seeds)[j], max_iou
