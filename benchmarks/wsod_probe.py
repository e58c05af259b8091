"""The WSOD probe: how far MIDN and OICR get on a frozen backbone's per-proposal features.

    python benchmarks/wsod_probe.py --root VOCdevkit/VOC2007 --split train [--scale 480] [--boxes 300]
                                    [--frame 1.5] [--epochs 6] [--seed 0] [--features DIR] [--cam 0.3]

The backbone (`--backbone`, ImageNet weights, everything frozen) runs once on each image at one
scale: the per-proposal head features that the model's detector reads (the head on the 7x7
`roi_pool` of res4, averaged), and with `--frame S` the same of each proposal's frame (the box
scaled by S, less the box: `model.context_frame`), cached in `--features`. Then the detector of
`wsis.model.heads.DetectionHead` (MIDN and three OICR refinements, no regressor) trains on the cached
features alone for `--epochs` passes over the split, in seconds an epoch, and the probe prints
CorLoc on the same images (transductive, as WSOD reports it on trainval), per class, and how large
the located boxes are against the objects. Beside it: the whole image, the largest proposal, a
random one, and the share of objects that one of the proposals hits (the ceiling). `--cam T`
instead scores the CAM baseline: an image classifier on the whole frozen network's last map, and
each class's box where its class activation map exceeds T of its range; `--cam-seeds T` trains the
detector with its first refinement learning from the proposals nearest those boxes instead of from
MIDN's top boxes. `--classes a,b` trains on those classes alone (the others' tags dropped), with
`--negatives` keeping the images that hold none of them as all-zero labels (else they are left
out); `--holdout F` trains on a fixed draw of 1-F of the images and scores the rest: CorLoc there,
and how often a class's top box scores 0.5 or more where the class is absent or present.

It screens in minutes what a full run (an hour on two cores) would take to say: whether a frozen
backbone's features localise objects at all, and which detector-side choice helps.
"""
import argparse
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from wsis import ops
from wsis.config import ModelConfig
from wsis.data import proposals
from wsis.data.cache import cache_root
from wsis.data.loader import _read_rgb, transform
from wsis.data.voc import VOCDataset
from wsis.evaluation import metrics as M
from wsis.model import losses
from wsis.model.backbone import Backbone
from wsis.model.heads import DetectionHead, mean_refinement_scores, midn_scores
from wsis.model.network import frame_mask, pseudo_labels
from wsis.progress import Progress


def extract(args) -> Dict[str, object]:
    """Per image: proposals [R, 4] (original pixels), head features [R, D] and frame features or None."""
    name = f"{args.split}-{args.backbone}-s{args.scale}-b{args.boxes}-p{args.proposal_scale:g}-f{args.frame:g}.pt"
    path = args.features / name
    if path.is_file():
        return torch.load(path)
    data = VOCDataset(args.root, args.split)
    model = Backbone(args.backbone, "imagenet", "all", 2, True).eval().to(memory_format=torch.channels_last)
    cells = frame_mask(7, args.frame) if args.frame else None
    out = {"ids": list(data.image_ids), "boxes": [], "feats": [], "frames": []}
    bar = Progress(len(data), f"features of {args.split}", "img")
    with torch.no_grad():
        for n, image_id in enumerate(data.image_ids, 1):
            image = _read_rgb(data.image_path(image_id))
            boxes = proposals.filter_boxes(proposals.load(args.root, image_id, "fast", args.proposal_scale),
                                           image.height, image.width, 8, args.boxes)  # fmt: skip
            x, b, _ = transform(image, boxes, args.scale, 1000, False)
            _, res4 = model.trunk(x[None].contiguous(memory_format=torch.channels_last))
            rois = torch.cat([torch.zeros(len(b), 1), b], 1)
            out["feats"].append(model.res5(ops.roi_pool(res4.float(), rois, 7, 1 / 16)).mean((2, 3)).half())
            if cells is not None:
                centre, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]) / 2 * args.frame
                outer = torch.cat([rois[:, :1], centre - half, centre + half], 1)
                pooled = ops.roi_pool(res4.float(), outer, 7, 1 / 16) * cells
                out["frames"].append(model.res5(pooled).mean((2, 3)).half())
            out["boxes"].append(torch.from_numpy(np.asarray(boxes, np.float32)))
            bar.update(n)
    args.features.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def cam_corloc(args) -> Dict[str, object]:
    """The CAM baseline: a 1x1-conv classifier on the whole frozen network's last map (global average
    pooling, BCE on the image labels), each present class's CAM min-max normalised at the image's
    size, thresholded at `--cam`, and the box of its largest connected region."""
    import cv2
    import timm

    from wsis.model.backbone import _load, imagenet_state

    data = VOCDataset(args.root, args.split)
    path = args.features / f"{args.split}-{args.backbone}-s{args.scale}-maps.pt"
    if path.is_file():
        maps = torch.load(path)
    else:
        net = timm.create_model(args.backbone)
        _load(net, imagenet_state(args.backbone, "imagenet"), "imagenet")
        net.eval()
        maps, bar = [], Progress(len(data), f"maps of {args.split}", "img")
        with torch.no_grad():
            for n, image_id in enumerate(data.image_ids, 1):
                x, _, _ = transform(_read_rgb(data.image_path(image_id)), np.zeros((0, 4)), args.scale, 1000, False)
                maps.append(net.forward_features(x[None])[0].half())
                bar.update(n)
        args.features.mkdir(parents=True, exist_ok=True)
        torch.save(maps, path)
    torch.manual_seed(args.seed)
    labels = torch.stack([data.labels(i) for i in data.image_ids])
    classifier = torch.nn.Conv2d(maps[0].shape[0], len(data.classes), 1)
    opt = torch.optim.AdamW(classifier.parameters(), 1e-3, weight_decay=1e-4)
    for epoch in range(args.epochs):
        total = 0.0
        for batch in torch.randperm(len(maps)).split(16):
            logits = torch.stack([classifier(maps[i][None].float()).mean((2, 3))[0] for i in batch.tolist()])
            loss = F.binary_cross_entropy_with_logits(logits, labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(batch) / len(maps)
        print(f"epoch {epoch + 1}: image BCE {total:.3f}", flush=True)
    results = []
    with torch.no_grad():
        for i, image_id in enumerate(data.image_ids):
            classes, gt, difficult = data.objects(image_id)
            h, w = data.image_size(image_id)
            cams = classifier(maps[i][None].float())
            present, boxes = torch.unique(classes), []
            for c in present.tolist():
                cam = F.interpolate(cams[:, c - 1 : c], size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
                cam = (cam - cam.min()) / max(cam.max() - cam.min(), 1e-6)
                count, _, stats, _ = cv2.connectedComponentsWithStats((cam >= args.cam).astype(np.uint8))
                j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) if count > 1 else 0
                x, y, bw, bh = stats[j, :4]
                boxes.append([x, y, x + bw, y + bh])
            results.append(M.ImageResult(image_id, present.numpy(), np.ones(len(present)), np.array(boxes, np.float32),
                                         classes.numpy(), gt.numpy(), difficult.numpy()))  # fmt: skip
    out = M.corloc(results, len(data.classes))
    out["boxes"] = {r.image_id: dict(zip(r.pred_classes.tolist(), r.pred_boxes)) for r in results}
    return out


def corloc(head, feats, frames, boxes, data, image_ids) -> Dict[str, object]:
    """CorLoc of the top box a class (the mean refinement scores), and the top boxes' sides over the objects'."""
    results, sides = [], []
    with torch.no_grad():
        for i, image_id in enumerate(image_ids):
            _, _, refine, _ = head(feats[i], frames[i] if frames else None)
            scores = mean_refinement_scores(refine)[:, 1:]
            classes, gt, difficult = data.objects(image_id)
            present = torch.unique(classes)
            top = scores[:, present - 1].argmax(0)
            results.append(M.ImageResult(image_id, present.numpy(), np.ones(len(present)), boxes[i][top].numpy(),
                                         classes.numpy(), gt.numpy(), difficult.numpy()))  # fmt: skip
            for c, t in zip(present.tolist(), top.tolist()):
                side = lambda x: np.sqrt((x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1]))  # noqa: E731
                sides.append(side(boxes[i][t : t + 1].numpy())[0] / side(gt[classes == c].numpy()).max())
    out = M.corloc(results, len(data.classes))
    out["side_ratio"] = np.percentile(sides, [10, 50, 90]).tolist()
    return out


def heldout(head, feats, frames, boxes, data, ids, rows, kept) -> None:
    """On the images `rows` (the held-out ones, or all), for the `kept` classes: CorLoc, the image
    classification mAP of a class's top box score, and how often that score is 0.5 or more where
    the class is absent (a false alarm) or present."""
    to_kept = torch.zeros(len(data.classes) + 1, dtype=torch.int64)
    to_kept[torch.tensor(kept) + 1] = torch.arange(1, len(kept) + 1)
    results, tops, presents = [], [], []
    with torch.no_grad():
        for i in rows:
            _, _, refine, _ = head(feats[i], frames[i] if frames else None)
            scores = mean_refinement_scores(refine)[:, 1:]
            classes, gt, difficult = data.objects(ids[i])
            mine = to_kept[classes]
            classes, gt, difficult = mine[mine > 0], gt[mine > 0], difficult[mine > 0]
            present = torch.zeros(len(kept), dtype=torch.bool)
            present[classes - 1] = True
            top, best = scores.max(0)
            tops.append(top)
            presents.append(present)
            if present.any():
                c = torch.nonzero(present).flatten() + 1
                results.append(M.ImageResult(ids[i], c.numpy(), np.ones(len(c)), boxes[i][best[c - 1]].numpy(),
                                             classes.numpy(), gt.numpy(), difficult.numpy()))  # fmt: skip
    out = M.corloc(results, len(kept))
    tops, presents = torch.stack(tops).numpy(), torch.stack(presents).numpy()
    ap = [M.average_precision(presents[:, c], tops[:, c], int(presents[:, c].sum()))
          for c in range(len(kept)) if presents[:, c].any()]  # fmt: skip
    scored, none = tops >= 0.5, ~presents.any(1)
    alarms, hits = scored[~presents], scored[presents]
    print(f"held out: {len(rows)} images, {int(none.sum())} with none of the classes; CorLoc {out['CorLoc']:.1f}; "
          f"image classification mAP (a class's top box score) {100 * np.mean(ap):.1f}; "
          f"a top box scoring >= 0.5 for an absent class {100 * alarms.mean():.1f}% of {alarms.size} (image, class), "
          f"in {100 * scored[none].any(1).mean() if none.any() else float('nan'):.1f}% of the images with none; "
          f"for a present class {100 * hits.mean():.1f}% of {hits.size}")  # fmt: skip


def baselines(feats_boxes: List[torch.Tensor], data, image_ids) -> Dict[str, float]:
    """CorLoc of the whole image, the largest proposal and a random one (expected), and the ceiling."""
    rows = {"largest": [], "whole": []}
    hits = {"random": np.zeros(len(data.classes)), "ceiling": np.zeros(len(data.classes))}
    count = np.zeros(len(data.classes))
    for boxes, image_id in zip(feats_boxes, image_ids):
        classes, gt, difficult = data.objects(image_id)
        present = torch.unique(classes)
        h, w = data.image_size(image_id)
        b = boxes.numpy()
        largest = b[np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))]
        for key, box in (("largest", largest), ("whole", np.array([0, 0, w, h], np.float32))):
            rows[key].append(M.ImageResult(image_id, present.numpy(), np.ones(len(present)), np.tile(box, (len(present), 1)),
                                           classes.numpy(), gt.numpy(), difficult.numpy()))  # fmt: skip
        for c in present.tolist():
            iou = M.box_iou(b, gt[classes == c].numpy()).max(1)
            count[c - 1] += 1
            hits["random"][c - 1] += (iou >= 0.5).mean()
            hits["ceiling"][c - 1] += iou.max() >= 0.5
    out = {k: M.corloc(v, len(data.classes))["CorLoc"] for k, v in rows.items()}
    out.update({k: 100 * float(np.mean(v[count > 0] / count[count > 0])) for k, v in hits.items()})
    return out


def train(args, cache, cam_boxes=None) -> None:
    """`cam_boxes` ({image: {class: box}}): the first refinement learns from the proposals nearest them
    (weighted by that IoU) instead of from MIDN's top boxes."""
    torch.manual_seed(args.seed)
    data = VOCDataset(args.root, args.split)
    ids, boxes = cache["ids"], cache["boxes"]
    raw = [f.float() for f in cache["feats"]]
    sample = torch.cat(raw[:200])
    mean, std = sample.mean(0), sample.std(0) + 1e-3  # standardised: the features' scales differ by channel
    feats = [(f - mean) / std for f in raw]
    frames = [(f.float() - mean) / std for f in cache["frames"]] if args.frame else []
    kept = [data.classes.index(n) for n in args.classes.split(",")] if args.classes else list(range(len(data.classes)))
    labels = torch.stack([data.labels(i) for i in ids])[:, kept]
    held = set(np.random.default_rng(0).permutation(len(ids))[: int(args.holdout * len(ids))].tolist())
    trained = [i for i in range(len(ids)) if i not in held and (args.negatives or labels[i].any())]
    print(f"training on {len(trained)} images ({sum(not labels[i].any() for i in trained)} negatives), "
          f"{len(held)} held out", flush=True)  # fmt: skip
    head = DetectionHead(feats[0].shape[1], len(kept), 3, "none", 0, 0.01)
    seeds = ModelConfig(pseudo_seeds=args.seeds, bg_thresh=args.bg_thresh)  # the model's rules and thresholds
    steps = args.epochs * (len(trained) // args.batch)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.1)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order, total = [trained[j] for j in torch.randperm(len(trained)).tolist()], {"cls": 0.0, "refine": 0.0}
        for k in range(len(trained) // args.batch):
            loss = 0
            for i in order[k * args.batch : (k + 1) * args.batch]:
                cls, det, refine, _ = head(feats[i], frames[i] if frames else None)
                z = midn_scores(cls, det)
                terms = {"cls": losses.midn_loss(z.sum(0), labels[i]), "refine": 0}
                prev = z.detach()
                if cam_boxes is not None:  # the first refinement's seeds: the proposal nearest each class's CAM box
                    prev = torch.zeros_like(prev)
                    for c, box in cam_boxes[ids[i]].items():
                        prev[:, c - 1] = ops.box_iou(boxes[i], torch.as_tensor(box)[None]).squeeze(1)
                for logits in refine:
                    lab, w, _, _ = pseudo_labels(boxes[i], prev.contiguous(), labels[i], seeds)
                    terms["refine"] = terms["refine"] + losses.refine_loss(logits, lab, w)
                    prev = F.softmax(logits.detach(), 1)[:, 1:]
                loss = loss + terms["cls"] + terms["refine"]
                total = {t: total[t] + terms[t].item() / len(trained) for t in total}
            opt.zero_grad()
            (loss / args.batch).backward()
            opt.step()
            schedule.step()
        print(f"epoch {epoch + 1}: cls {total['cls']:.3f} refine {total['refine']:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    head.eval()
    if held or args.classes:
        heldout(head, feats, frames, boxes, data, ids, sorted(held) or range(len(ids)), kept)
        return
    result = corloc(head, feats, frames, boxes, data, ids)
    per_class = " ".join(f"{n} {v:.0f}" for n, v in zip(data.classes, result["per_class"]))
    print(f"CorLoc {result['CorLoc']:.1f} ({len(ids)} images of {args.split}, transductive)\n  {per_class}")
    print("  the located box's side over the object's (10th, 50th, 90th percentile): "
          + ", ".join(f"{v:.2f}" for v in result["side_ratio"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/wsod_probe.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="a VOC-format tree with boxes (VOC 2007)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--scale", type=int, default=480, help="the images' shorter side")
    parser.add_argument("--boxes", type=int, default=300, help="proposals an image (Selective Search's first)")
    parser.add_argument("--proposal-scale", type=float, default=0.55, help="data.proposal_scale of the cached proposals")
    parser.add_argument("--frame", type=float, default=0.0, help="model.context_frame (0: off)")
    parser.add_argument("--seeds", choices=("oicr", "mist", "pcl"), default="oicr", help="model.pseudo_seeds")
    parser.add_argument("--bg-thresh", type=float, default=0.1, help="model.bg_thresh")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", default="", help="a,b: train on these classes alone (default: all)")
    parser.add_argument("--negatives", action="store_true",
                        help="with --classes: keep the images holding none of them as negatives (data.negatives)")
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="score on this share of the images (a fixed draw), train on the rest (0: transductive)")
    parser.add_argument("--features", type=Path, default=None, help="the feature cache (default: beside the proposals)")
    parser.add_argument("--baselines", action="store_true", help="also print the baselines' CorLoc")
    parser.add_argument("--cam-seeds", type=float, default=0.0,
                        help="train the detector with its first refinement seeded by the CAM boxes at this threshold")
    parser.add_argument("--cam", type=float, default=0.0,
                        help="instead: the CAM baseline, its boxes thresholded at this share of the CAM's range")  # fmt: skip
    args = parser.parse_args(argv)
    if args.classes and (args.cam or args.cam_seeds):
        parser.error("--classes trains the detector: not with --cam or --cam-seeds")
    args.features = args.features or cache_root(args.root) / "probe_features"
    if args.cam_seeds:
        args.cam = args.cam_seeds
        cam_boxes = cam_corloc(args)["boxes"]
        train(args, extract(args), cam_boxes)
        return
    if args.cam:
        result = cam_corloc(args)
        per_class = " ".join(f"{n} {v:.0f}" for n, v in zip(VOCDataset(args.root, args.split).classes, result["per_class"]))
        print(f"CAM boxes at {args.cam:g}: CorLoc {result['CorLoc']:.1f} ({args.split}, transductive)\n  {per_class}")
        return
    cache = extract(args)
    if args.baselines:
        b = baselines(cache["boxes"], VOCDataset(args.root, args.split), cache["ids"])
        print("baselines: " + ", ".join(f"{k} {v:.1f}" for k, v in b.items()))
    train(args, cache)


if __name__ == "__main__":
    main()
