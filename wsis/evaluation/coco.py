"""COCO results files (our detections to and from COCO's results format, RLE masks) and
pycocotools' COCOeval on a COCO-format split."""
import contextlib
import io
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from ..inference import Detections

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6], in percent


def coco_metrics(dets: Dict[str, Detections], data) -> Dict[str, Dict[str, float]]:
    """pycocotools' COCOeval, `segm` (where the split has masks) and `bbox`, over the images of `dets`
    (crowd as COCO handles it)."""
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        gt = data.coco_api()
        results = to_coco(dets, data)
        out = {}
        for kind in ("segm", "bbox") if getattr(data, "has_masks", True) else ("bbox",):
            if not results:
                out[kind] = {k: 0.0 for k in COCO_STATS}
                continue
            ev = COCOeval(gt, gt.loadRes(results), kind)
            ev.params.imgIds = sorted(data.result_image_id(i) for i in dets)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            # -1 is COCOeval's "no ground truth in this area range"
            out[kind] = {k: (100 * float(v) if v >= 0 else float("nan")) for k, v in zip(COCO_STATS, ev.stats[:6])}
    return out


def to_coco(dets: Dict[str, Detections], data=None) -> List[dict]:
    """COCO results entries; with `data`, in its ids (a COCO split's own image and category ids)."""
    from pycocotools import mask as mask_utils

    out = []
    for image_id, d in dets.items():
        result_id = data.result_image_id(image_id) if data is not None else image_id
        for box, cls, s, m in zip(d.boxes.tolist(), d.classes.tolist(), d.scores.tolist(), d.masks.numpy()):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            category = data.result_category_id(int(cls)) if data is not None else int(cls)
            out.append({"image_id": result_id, "category_id": category, "score": float(s),
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "segmentation": rle})  # fmt: skip
    return out


def from_coco(path: Path, data) -> Dict[str, Detections]:
    """Detections per image from a COCO results file (docs/DESIGN.md §5); images without entries have none."""
    from pycocotools import mask as mask_utils

    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--predictions: cannot read {path} as JSON: {e}") from None
    if not isinstance(entries, list):
        raise ValueError(f"--predictions: {path} must hold a JSON list of results")
    by_image: Dict[str, list] = {}
    for n, e in enumerate(entries):
        try:
            c = data.category_index(int(e["category_id"]))
            item = (c, float(e["score"]), e["bbox"], e["segmentation"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"--predictions: entry {n} of {path} lacks image_id/category_id/score/bbox/segmentation") from None
        if c == 0:
            raise ValueError(f"--predictions: entry {n} of {path} has category_id {e['category_id']}, not a category of "
                             f"the split ({data.result_category_id(1)}..: {len(data.classes)} categories)")  # fmt: skip
        by_image.setdefault(data.image_id_of(e["image_id"]), []).append(item)
    out = {}
    for image_id in data.image_ids:
        items = by_image.get(image_id, [])
        h, w = data.image_size(image_id)
        masks = np.zeros((len(items), h, w), bool)
        for k, (c, _, _, seg) in enumerate(items):
            rle = dict(seg, counts=seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"])
            masks[k] = mask_utils.decode(rle).astype(bool)
        boxes = torch.tensor([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for _, _, b, _ in items], dtype=torch.float32)
        out[image_id] = Detections(boxes.reshape(-1, 4), torch.tensor([c for c, *_ in items], dtype=torch.int64),
                                   torch.tensor([s for _, s, *_ in items], dtype=torch.float32),
                                   torch.from_numpy(masks))  # fmt: skip
    return out
