"""A split scored (docs/DESIGN.md §5): the model's detections against the ground truth, the metrics file,
the printed table; the post-processed masks scored beside the model's own."""
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

import numpy as np
from ..config import Config, TestConfig
from ..data.formats import ClassesByName, open_split, with_classes
from ..data.loader import InferenceDataset
from ..inference import Detections, Predictor, fill_boxes, image_views, predict_split, test_views
from ..progress import Progress
from . import metrics as M
from .coco import coco_metrics, to_coco
from .postprocess import mask_nms_threshold, postprocess_detections


def _result(image_id, det: Detections, data, with_masks: bool) -> M.ImageResult:
    classes, boxes, difficult = data.objects(image_id)
    res = M.ImageResult(image_id, det.classes.numpy(), det.scores.numpy().astype(np.float64), det.boxes.numpy(),
                        classes.numpy(), boxes.numpy(), difficult.numpy())  # fmt: skip
    inst = data.instances(image_id) if with_masks else None
    if inst is not None:  # None: a split with boxes only (VOC 2007)
        res.pred_masks, res.gt_masks, res.void = det.masks.numpy(), inst.masks.numpy(), inst.void.numpy()
        res.gt_mask_classes = inst.classes.numpy()
    return res


def score(dets: Dict[str, Detections], data, corloc_dets: Optional[Dict[str, Detections]],
          corloc_data) -> Dict[str, object]:  # fmt: skip
    """The metrics file's content (docs/DESIGN.md §5) from detections of the evaluation (and CorLoc) split;
    on a COCO-format split, COCO's own AP too (`coco`)."""
    results = [_result(i, dets[i], data, True) for i in data.image_ids if i in dets]
    missing = [i for i in data.image_ids if i not in dets]
    num_classes = len(data.classes)
    m = M.instance_metrics(results, num_classes)
    located = results  # CorLoc on the scored split needs no second pass over its annotations
    if corloc_dets is not None:
        located = [_result(i, corloc_dets[i], corloc_data, False) for i in corloc_data.image_ids if i in corloc_dets]
    cl = M.corloc(located, num_classes)
    m["CorLoc"] = cl["CorLoc"]
    m["per_class"]["CorLoc"] = cl["per_class"]
    m["per_class"] = {k: dict(zip(data.classes, v)) for k, v in m["per_class"].items()}
    m["num_images"] = len(results)
    if missing:
        m["images_without_predictions"] = len(missing)
    if callable(getattr(data, "coco_api", None)):  # a COCO split, in its own classes
        m["coco"] = coco_metrics(dets, data)
    order = ["mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "det_mAP@0.5_11pt", "CorLoc", "num_images",
             "masks_scored"]
    return {k: m[k] for k in order} | {k: v for k, v in m.items() if k not in order}


def whole_image_detections(data) -> Dict[str, Detections]:
    """The simplest baseline a detector must beat: in each image, one detection a class present
    (the image-level labels training has), the whole image as its box and its mask."""
    dets = {}
    for image_id in data.image_ids:
        height, width = data.image_size(image_id)
        classes = torch.nonzero(data.labels(image_id)).flatten() + 1
        boxes = torch.tensor([[0.0, 0.0, width, height]]).repeat(len(classes), 1)
        dets[image_id] = Detections(boxes, classes, torch.ones(len(classes)), fill_boxes(boxes, height, width))
    return dets


def table(m: Dict[str, object]) -> str:
    keys = ["mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc"]
    lines = [" | ".join(f"{k:>11}" for k in keys), " | ".join(f"{m[k]:>11.1f}" for k in keys)]
    if "postprocessed" in m:
        p = m["postprocessed"]
        lines.append(" | ".join(f"{p[k]:>11.1f}" if k in p else f"{'':>11}" for k in keys) + f"   ({p['method']} masks)")
    for kind, stats in m.get("coco", {}).items():
        lines.append(f"COCO {kind:<4} " + "  ".join(f"{k} {v:.1f}" for k, v in stats.items()))
    notes = [f"{m['num_images']} images"]
    if not m.get("masks_scored", True):
        notes.append("boxes only: mask figures are not scored (the split has no instance masks)")
    if "det_mAP@0.5_11pt" in m:
        notes.append(f"det mAP with VOC 2007's 11-point AP: {m['det_mAP@0.5_11pt']:.1f}")
    return "\n".join(lines) + f"\n({'; '.join(notes)})"


def write(out: Path, m: Dict[str, object], dets: Optional[Dict[str, Detections]] = None, data=None) -> None:
    """metrics.json, and predictions.json in the ids of `data`'s split."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(m, indent=1) + "\n")
    if dets is not None:
        (out / "predictions.json").write_text(json.dumps(to_coco(dets, data)) + "\n")


def evaluate_model(model, cfg: Config, root: Path, split: str, corloc_split: Optional[str], device,
                   postprocess: str = "none", what: str = "inference", classes: Optional[Sequence[str]] = None):  # fmt: skip
    """(metrics, detections, data) of a split. The metrics are those of the model's own masks; with a
    `postprocess` (docs/USAGE.md, Post-processing) those of the post-processed masks sit beside them under `postprocessed`.
    `classes`: the model's, where they may differ from the split's (another data set): matched by name."""
    data = split_for(root, split, cfg, classes)
    dets = predict_split(model, cfg, root, split, device, what)
    corloc_dets = corloc_data = None
    if corloc_split and corloc_split != split:
        corloc_data = split_for(root, corloc_split, cfg, classes)
        corloc_dets = predict_split(model, cfg, root, corloc_split, device, what="CorLoc")
    m = score(dets, data, corloc_dets, corloc_data)
    m["split"], m["corloc_split"] = split, corloc_split or split
    if isinstance(data, ClassesByName):
        m["classes_not_scored"], m["classes_absent"] = data.unscored, data.absent
    if postprocess != "none":
        m["postprocessed"] = postprocessed_metrics(dets, data, postprocess, cfg.test)
    return m, dets, data


# What post-processing changes: the masks, so the mask metrics (boxes, scores and CorLoc stay).
MASK_METRICS = ("mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO")


def postprocessed_metrics(dets: Dict[str, Detections], data, method: str, test: TestConfig) -> Dict[str, object]:
    """The mask figures of `postprocess_detections` (`method` with the settings of `test`, then mask NMS),
    with the graph segments cached under `data.root` where there are any."""
    post = postprocess_detections(method, data.image_path, test, data.root)
    nms = mask_nms_threshold(method, test)
    bar = Progress(len(dets), f"postprocess ({method})", "img")
    snapped = {}
    for n, (image_id, d) in enumerate(dets.items(), 1):
        snapped[image_id] = post(image_id, d)
        bar.update(n)
    superpixels = {"superpixel_iou": test.superpixel_iou, "superpixel_cover": test.superpixel_cover,
                   "segment_box_weight": test.segment_box_weight} if method == "segments" else {}  # fmt: skip
    return {"method": method, "nms": nms, **superpixels, **mask_figures(score(snapped, data, None, None))}


def mask_figures(m: Dict[str, object]) -> Dict[str, object]:
    """The mask metrics of a metrics dict, per class too."""
    return {**{k: m[k] for k in MASK_METRICS}, "per_class": {k: v for k, v in m["per_class"].items() if k in MASK_METRICS}}


def split_for(root: Path, split: str, cfg: Config, classes: Optional[Sequence[str]] = None):
    """The split's reader, seen through the model's `classes` by name where they differ from its own;
    says which classes cannot be scored, and refuses a split that shares none."""
    data = open_split(root, split, classes=cfg.data.classes)
    if classes is None:
        return data
    data = with_classes(data, classes)
    if isinstance(data, ClassesByName):
        if len(data.absent) == len(data.classes):
            raise ValueError(f"{root} ({split}) shares no class with the checkpoint: its classes are {data.unscored[:10]}, "
                             f"the checkpoint's {list(classes)[:10]}")  # fmt: skip
        print(f"classes matched by name: {len(data.classes) - len(data.absent)} of the checkpoint's {len(data.classes)}"
              + (f"; not scored (the checkpoint has no such class): {', '.join(data.unscored)}" if data.unscored else "")
              + (f"; without ground truth here: {', '.join(data.absent)}" if data.absent else ""))  # fmt: skip
    return data


def oracle_box_metrics(model, cfg: Config, root: Path, split: str, device,
                       classes: Optional[Sequence[str]] = None) -> Dict[str, object]:  # fmt: skip
    """The mask path apart from the detector: on every ground-truth box, with its class and score 1,
    the model's masks and the box filled in, scored alike (mask figures only)."""
    data = InferenceDataset(root, split, cfg.data, *test_views(cfg))
    if classes is not None:
        data.data = split_for(root, split, cfg, classes)
    predictor = Predictor(model, cfg.test, device)
    masks, filled = {}, {}
    bar = Progress(len(data), f"oracle boxes {split}", "img")
    for n, views in enumerate(image_views(data, cfg.data.workers), 1):
        image_id = views[0].image_id
        inst = data.data.instances(image_id)
        if inst is None:
            raise ValueError(f"the oracle boxes score masks: split {split!r} has boxes only, no instance masks")
        h, w = inst.void.shape
        scores = torch.ones(len(inst.boxes))
        masks[image_id] = Detections(inst.boxes, inst.classes, scores, predictor.masks_of(views, inst.boxes, inst.classes, (h, w)))
        filled[image_id] = Detections(inst.boxes, inst.classes, scores, fill_boxes(inst.boxes, h, w))
        bar.update(n)
    out = {}
    for name, dets in (("masks", masks), ("filled_boxes", filled)):
        out[name] = mask_figures(score(dets, data.data, None, None))
    out["split"], out["num_images"] = split, len(masks)
    return out


def oracle_table(m: Dict[str, object]) -> str:
    lines = [f"{'ground-truth boxes':<22}" + " | ".join(f"{k:>11}" for k in MASK_METRICS)]
    for name, label in (("masks", "the model's masks"), ("filled_boxes", "the boxes filled in")):
        lines.append(f"{label:<22}" + " | ".join(f"{m[name][k]:>11.1f}" for k in MASK_METRICS))
    return "\n".join(lines) + f"\n({m['num_images']} images)"
