"""python -m wsis.evaluate --checkpoint CKPT [--data ROOT] [--split val] [--tta] [--postprocess ...] [key=value ...]
python -m wsis.evaluate --predictions FILE.json --data ROOT [--split val]

Scores a checkpoint (mAP^r at 0.25/0.5/0.75, ABO and detection mAP@0.5 on `--split`, CorLoc on
`--corloc-split`, by default the config's `test.corloc_split`) or a COCO-format predictions file made by
any tool. Prints a table and writes `metrics.json` and `predictions.json` (COCO results format
with RLE masks) into `--out`.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from . import config as config_lib
from . import metrics as M
from .config import Config
from .data import proposals
from .data.loader import InferenceDataset
from .data.prepare import synthetic_root
from .data.formats import is_coco, open_split
from .engine import checkpoint as ckpt_lib
from .engine.distributed import device_kind
from .inference import Detections, Predictor
from .model import CommunityNet
from .model.backbone import WeightsUnavailable
from .postprocess import check_postprocess
from .progress import Progress
from .visualize import save_pictures


def load_model(path: Path, overrides: List[str] = (), device: Optional[torch.device] = None):
    """(model, config, classes) of a checkpoint; the config is the checkpoint's own plus `overrides`."""
    state = ckpt_lib.load(path)
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a wsis checkpoint (no 'model'/'config' entries)")
    cfg = config_lib.apply_overrides(config_lib.merge(config_lib.Config(), state["config"]), overrides).check()
    classes = list(state["classes"])
    model = CommunityNet(cfg.model, len(classes))
    ckpt_lib.check_fits(model, state["model"], f"checkpoint {path}")
    model.load_state_dict(state["model"])
    device = device or torch.device(device_kind("auto"))
    return model.to(device).eval(), cfg, classes


def _first(batch):
    return batch[0]


def _views_loader(cfg: Config, root: Path, split: str, scales, flip: bool):
    data = InferenceDataset(root, split, scales, cfg.data.max_size, flip, cfg.data.proposal_mode, cfg.data.min_box,
                            cfg.data.max_boxes)  # fmt: skip
    loader = torch.utils.data.DataLoader(data, batch_size=1, collate_fn=_first, num_workers=cfg.data.workers)
    return data, loader


def test_views(cfg: Config):
    return tuple(cfg.test.scales or cfg.data.scales), cfg.test.flip


def predict_split(model, cfg: Config, root: Path, split: str, device, what: str = "inference"):
    """{image_id: Detections} for every image of a split."""
    scales, flip = test_views(cfg)
    data, loader = _views_loader(cfg, root, split, scales, flip)
    predictor = Predictor(model, cfg.test, cfg.model.xi, device)
    out = {}
    bar = Progress(len(data), f"{what} {split}", "img")
    for i, views in enumerate(loader):
        image_id = views[0].image_id
        out[image_id] = predictor(views, data.data.image_size(image_id))
        bar.update(i + 1)
    return out


def _result(image_id, det: Detections, data, with_masks: bool) -> M.ImageResult:
    classes, boxes, difficult = data.objects(image_id)
    res = M.ImageResult(image_id, det.classes.numpy(), det.scores.numpy().astype(np.float64), det.boxes.numpy(),
                        classes.numpy(), boxes.numpy(), difficult.numpy())  # fmt: skip
    if with_masks:
        inst = data.instances(image_id)
        res.pred_masks, res.gt_masks, res.void = det.masks.numpy(), inst.masks.numpy(), inst.void.numpy()
        res.gt_mask_classes = inst.classes.numpy()
    return res


def score(dets: Dict[str, Detections], data, corloc_dets: Optional[Dict[str, Detections]],
          corloc_data) -> Dict[str, object]:  # fmt: skip
    """The metrics file's content (DESIGN §5) from detections of the evaluation (and CorLoc) split;
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
    if is_coco(data.split):
        m["coco"] = coco_metrics(dets, data)
    order = ["mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc", "num_images"]
    return {k: m[k] for k in order} | {k: v for k, v in m.items() if k not in order}


COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6], in percent


def coco_metrics(dets: Dict[str, Detections], data) -> Dict[str, Dict[str, float]]:
    """pycocotools' COCOeval, `segm` and `bbox`, over the images of `dets` (crowd as COCO handles it)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        gt = data.coco_api()
        results = to_coco(dets, data)
        out = {}
        for kind in ("segm", "bbox"):
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


# ---- COCO results format ---------------------------------------------------------------------
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
    """Detections per image from a COCO results file (DESIGN §5); images without entries have none."""
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


def table(m: Dict[str, object]) -> str:
    keys = ["mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc"]
    lines = [" | ".join(f"{k:>11}" for k in keys), " | ".join(f"{m[k]:>11.1f}" for k in keys)]
    if "postprocessed" in m:
        p = m["postprocessed"]
        lines.append(" | ".join(f"{p[k]:>11.1f}" if k in p else f"{'':>11}" for k in keys) + f"   ({p['method']} masks)")
    for kind, stats in m.get("coco", {}).items():
        lines.append(f"COCO {kind:<4} " + "  ".join(f"{k} {v:.1f}" for k, v in stats.items()))
    return "\n".join(lines) + f"\n({m['num_images']} images)"


def write(out: Path, m: Dict[str, object], dets: Optional[Dict[str, Detections]] = None, data=None) -> None:
    """metrics.json, and predictions.json in the ids of `data`'s split."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(m, indent=1) + "\n")
    if dets is not None:
        (out / "predictions.json").write_text(json.dumps(to_coco(dets, data)) + "\n")


def evaluate_model(model, cfg: Config, root: Path, split: str, corloc_split: Optional[str], device,
                   postprocess: str = "none", what: str = "inference"):  # fmt: skip
    """(metrics, detections, data) of a split. The metrics are those of the model's own masks; with a
    `postprocess` (README: Evaluate) those of the post-processed masks sit beside them under `postprocessed`."""
    data = open_split(root, split)
    dets = predict_split(model, cfg, root, split, device, what)
    corloc_dets = corloc_data = None
    if corloc_split and corloc_split != split:
        corloc_data = open_split(root, corloc_split)
        corloc_dets = predict_split(model, cfg, root, corloc_split, device, what="CorLoc")
    m = score(dets, data, corloc_dets, corloc_data)
    m["split"], m["corloc_split"] = split, corloc_split or split
    if postprocess != "none":
        m["postprocessed"] = postprocessed_metrics(dets, data, postprocess)
    return m, dets, data


# What post-processing changes: the masks, so the mask metrics (boxes, scores and CorLoc stay).
MASK_METRICS = ("mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO")


def postprocessed_metrics(dets: Dict[str, Detections], data, method: str) -> Dict[str, object]:
    from .postprocess import make_postprocess

    post = make_postprocess(method, data.image_path)
    bar = Progress(len(dets), f"postprocess ({method})", "img")
    snapped = {}
    for n, (image_id, d) in enumerate(dets.items(), 1):
        snapped[image_id] = dataclasses.replace(d, masks=post(image_id, d.masks))
        bar.update(n)
    m = score(snapped, data, None, None)
    per_class = {k: v for k, v in m["per_class"].items() if k in MASK_METRICS}
    return {"method": method, **{k: m[k] for k in MASK_METRICS}, "per_class": per_class}


def evaluate_checkpoint(path: Path, root: Path, split: str, out: Path, cfg: Config) -> Dict[str, object]:
    """Used at the end of training (its data, proposals included, are prepared): metrics into `out`."""
    model, _, classes = load_model(path)
    device = next(model.parameters()).device
    m, dets, data = evaluate_model(model, cfg, root, split, cfg.test.corloc_split or None, device, cfg.test.postprocess)
    write(out, m, dets, data)
    save_pictures(dets, data.image_path, classes, out / "pictures")
    print(table(m))
    return m


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.evaluate", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a checkpoint written by python -m wsis.train")
    src.add_argument("--predictions", type=Path, help="a COCO results JSON (any tool's) to score instead")
    parser.add_argument("--data", type=Path, help="VOC-format root (default: the checkpoint config's data)")
    parser.add_argument("--split", default="val", help="split with instance masks to score (default: val)")
    parser.add_argument("--corloc-split", help="split for CorLoc ('none': the --split; default: the config's "
                                               "test.corloc_split, itself the --split when empty)")
    parser.add_argument("--tta", action="store_true", help="ensemble over every scale of data.scales and the flip")
    parser.add_argument("--postprocess", help="none | segments (OpenCV graph segments) | mcg:DIR; scored beside the "
                                              "model's own masks (default: the config's test.postprocess)")
    parser.add_argument("--out", type=Path, help="where metrics.json and predictions.json go (default: next to the input)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. test.scales=[288]")
    args = parser.parse_args(argv)
    try:
        if args.predictions:
            if not args.data:
                parser.error("--predictions needs --data ROOT")
            data = open_split(args.data, args.split)
            m = score(from_coco(args.predictions, data), data, None, None)
            m["split"], m["corloc_split"] = args.split, args.split
            out = args.out or args.predictions.parent
            write(out, m)
        else:
            overrides = list(args.overrides)
            if args.tta:
                overrides += ["test.scales=[]", "test.flip=true"]
            model, cfg, _ = load_model(args.checkpoint, overrides)
            root = args.data or Path(cfg.data.root or synthetic_root(cfg.data))
            corloc_split = args.corloc_split if args.corloc_split is not None else cfg.test.corloc_split
            corloc_split = None if corloc_split in ("none", "") else corloc_split
            for split in {args.split, corloc_split} - {None}:
                proposals.compute(root, split, cfg.data.proposal_mode)
            post = args.postprocess or cfg.test.postprocess
            check_postprocess(post)
            device = next(model.parameters()).device
            m, dets, data = evaluate_model(model, cfg, root, args.split, corloc_split, device, post)
            out = args.out or args.checkpoint.parent.parent / f"eval_{Path(args.split).stem}"
            write(out, m, dets, data)
    except (FileNotFoundError, ValueError, KeyError, WeightsUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(table(m))
    print(f"metrics: {(out / 'metrics.json').resolve()}")


if __name__ == "__main__":
    main()
