"""The paper's metrics (docs/DESIGN.md §5): mAP^r at mask IoU thresholds, ABO, detection mAP and CorLoc.

Matching follows the VOC devkit: per class, predictions in decreasing score each go to the
ground-truth instance of highest IoU in their image; a true positive if that IoU reaches the
threshold and the instance is not taken yet, else a false positive. AP is the VOC all-point area
under the interpolated precision-recall curve (`points=101` gives COCO's 101-point sampling, used
to cross-check against pycocotools). Void pixels count in neither intersection nor union.

Objects marked difficult in VOC's XML are ignored as the devkit ignores them: for detection mAP a
prediction whose best box is difficult is neither a true nor a false positive, and difficult boxes
are not counted as positives; for CorLoc they count as any box (`corloc`). The instance masks carry no such flag, so mAP^r and ABO use every
instance.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch


@dataclass
class ImageResult:
    """Predictions and ground truth of one image, all on the CPU."""

    image_id: str
    pred_classes: np.ndarray  # int64 [P], 1-based
    pred_scores: np.ndarray  # float [P]
    pred_boxes: np.ndarray  # float [P, 4]
    gt_classes: np.ndarray  # int64 [G], of the annotated boxes
    gt_boxes: np.ndarray  # float [G, 4]
    gt_difficult: Optional[np.ndarray] = None  # bool [G], VOC's difficult flag (None: none is)
    pred_masks: Optional[np.ndarray] = None  # bool [P, H, W]
    gt_masks: Optional[np.ndarray] = None  # bool [N, H, W], the annotated instance masks
    gt_mask_classes: Optional[np.ndarray] = None  # int64 [N]
    void: Optional[np.ndarray] = None  # bool [H, W]


def mask_iou(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU [P, G] of boolean masks, void pixels excluded."""
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)))
    keep = ~void.reshape(-1) if void is not None else slice(None)
    p = torch.from_numpy(pred.reshape(len(pred), -1)[:, keep]).float()
    g = torch.from_numpy(gt.reshape(len(gt), -1)[:, keep]).float()
    inter = p @ g.T
    union = p.sum(1, keepdim=True) + g.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).numpy().astype(np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None] - inter
    return inter / np.maximum(union, 1e-12)


def average_precision(tp: np.ndarray, scores: np.ndarray, num_gt: int, points: Optional[int] = None) -> float:
    """AP of predictions (`tp` flags, `scores`) against `num_gt` instances; 0 with no predictions."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / num_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    # the interpolated precision: the best precision at this recall or any higher one
    interp = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    if points is None:
        r = np.concatenate([[0.0], recall])
        return float(np.sum((r[1:] - r[:-1]) * interp))
    samples = np.linspace(0, 1, points)
    at = np.searchsorted(recall, samples, side="left")
    return float(np.mean([interp[i] if i < len(interp) else 0.0 for i in at]))


def _difficult(res: ImageResult) -> np.ndarray:
    return res.gt_difficult if res.gt_difficult is not None else np.zeros(len(res.gt_classes), bool)


def _class_ap(results: Sequence[ImageResult], ious: List[np.ndarray], c: int, thresh: float, points, kind) -> float:
    scores, tps, num_gt = [], [], 0
    for res, iou in zip(results, ious):
        gt = np.nonzero((res.gt_mask_classes if kind == "mask" else res.gt_classes) == c)[0]
        ignored = _difficult(res)[gt] if kind == "box" else np.zeros(len(gt), bool)
        num_gt += int((~ignored).sum())
        pred = np.nonzero(res.pred_classes == c)[0]
        if len(pred) == 0:
            continue
        order = pred[np.argsort(-res.pred_scores[pred], kind="mergesort")]
        taken = np.zeros(len(gt), bool)
        for p in order:
            hit = False
            if len(gt):
                o = iou[p, gt]
                j = int(np.argmax(o))
                if o[j] >= thresh and ignored[j]:
                    continue  # matched to a difficult object: neither a true nor a false positive
                if o[j] >= thresh and not taken[j]:
                    taken[j] = hit = True
            scores.append(res.pred_scores[p])
            tps.append(hit)
    return average_precision(np.array(tps, bool), np.array(scores, np.float64), num_gt, points)


def mean_ap(results: Sequence[ImageResult], num_classes: int, thresh: float, kind: str = "mask",
            points: Optional[int] = None, ious: Optional[List[np.ndarray]] = None) -> Dict[str, object]:  # fmt: skip
    """mAP (percent) over the classes that have ground truth, and AP per class (nan: no ground truth)."""
    if ious is None:
        ious = [pair_ious(r, kind) for r in results]
    per_class = [_class_ap(results, ious, c, thresh, points, kind) for c in range(1, num_classes + 1)]
    valid = [a for a in per_class if not np.isnan(a)]
    return {"mAP": 100 * float(np.mean(valid)) if valid else float("nan"), "per_class": [100 * a for a in per_class]}


def pair_ious(res: ImageResult, kind: str) -> np.ndarray:
    if kind == "mask":
        return mask_iou(res.pred_masks, res.gt_masks, res.void)
    return box_iou(res.pred_boxes, res.gt_boxes)


def abo(results: Sequence[ImageResult], ious: Optional[List[np.ndarray]] = None) -> float:
    """Average best overlap (percent): over ground-truth instances, the best mask IoU of any prediction."""
    best = []
    for res, iou in zip(results, ious or [pair_ious(r, "mask") for r in results]):
        best += list(iou.max(0)) if iou.shape[0] else [0.0] * len(res.gt_mask_classes)
    return 100 * float(np.mean(best)) if best else float("nan")


def corloc(results: Sequence[ImageResult], num_classes: int, thresh: float = 0.5) -> Dict[str, object]:
    """CorLoc (percent): per class, the share of its images whose top detection of that class hits
    one of its boxes at IoU >= thresh; averaged over classes. As weakly supervised detection counts
    it on VOC 2007 trainval (the devkit-derived `dis_eval` of OICR and PCL): an image counts for a
    class if it holds any box of the class, difficult ones included (its image label has the class),
    and a hit on any of them counts."""
    hits = np.zeros(num_classes)
    count = np.zeros(num_classes)
    for res in results:
        for c in np.unique(res.gt_classes):
            count[c - 1] += 1
            pred = np.nonzero(res.pred_classes == c)[0]
            if len(pred) == 0:
                continue
            top = pred[np.argmax(res.pred_scores[pred])]
            gt = res.gt_boxes[res.gt_classes == c]
            hits[c - 1] += box_iou(res.pred_boxes[top : top + 1], gt).max() >= thresh
    per_class = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
    valid = per_class[count > 0]
    return {"CorLoc": 100 * float(valid.mean()) if len(valid) else float("nan"), "per_class": list(100 * per_class)}


MASK_THRESHOLDS = (0.25, 0.5, 0.75)


def instance_metrics(results: Sequence[ImageResult], num_classes: int) -> Dict[str, object]:
    """mAP^r at 0.25/0.5/0.75, ABO and detection mAP@0.5 (area AP, and VOC 2007's 11-point AP beside
    it) of one split. Where an image has no ground-truth masks (a split with boxes only, as VOC
    2007's), the mask figures are nan and `masks_scored` is False."""
    out, per_class = {}, {}
    with_masks = all(r.gt_masks is not None for r in results)
    if with_masks:
        ious = [pair_ious(r, "mask") for r in results]
        for t in MASK_THRESHOLDS:
            m = mean_ap(results, num_classes, t, "mask", ious=ious)
            out[f"mAP@{t}"], per_class[f"mAP@{t}"] = m["mAP"], m["per_class"]
        out["ABO"] = abo(results, ious)
    else:
        out.update({f"mAP@{t}": float("nan") for t in MASK_THRESHOLDS} | {"ABO": float("nan")})
    box_ious = [pair_ious(r, "box") for r in results]
    det = mean_ap(results, num_classes, 0.5, "box", ious=box_ious)
    out["det_mAP@0.5"], per_class["det_mAP@0.5"] = det["mAP"], det["per_class"]
    out["det_mAP@0.5_11pt"] = mean_ap(results, num_classes, 0.5, "box", points=11, ious=box_ious)["mAP"]
    out["masks_scored"] = with_masks
    out["per_class"] = per_class
    return out
