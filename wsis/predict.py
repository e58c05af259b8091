"""python -m wsis.predict --checkpoint CKPT IMAGE_OR_DIR... --out DIR [--min-score 0.3] [--tta]
[--postprocess ...] [key=value ...]

For every image: an overlay PNG (masks in colour, boxes, class names and scores) and a JSON of
its detections (COCO-style boxes and RLE masks). The masks are those of the checkpoint's figures
with post-processing: after `test.postprocess` (the CPU default's `segments`, with its mask NMS),
or after `--postprocess` (`none`: the model's own masks). Proposals are computed on the fly
(Selective Search) unless `--proposals DIR` holds `<image stem>.npy` files. An unreadable image is
reported and skipped; the others go on.
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from .data import proposals as proposals_lib
from .data.loader import views as image_views
from .engine.checkpoint import load_model
from .evaluation import check_postprocess, postprocess_detections, to_coco
from .inference import TTA_OVERRIDES, Predictor, test_views
from .model.backbone import WeightsUnavailable
from .visualize import overlay

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_images(inputs: List[Path]) -> List[Path]:
    out = []
    for p in inputs:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such image or folder: {p}")
    twice = sorted(stem for stem, n in Counter(p.stem for p in out).items() if n > 1)
    if twice:
        raise ValueError(f"more than one image named {', '.join(twice)} (but for the extension): "
                         "their <name>.png and <name>.json would overwrite each other")
    if not out:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, inputs))}")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR | key=value",
                        help="images or folders of images; key=value items are config overrides (e.g. test.flip=true)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <stem>.png overlays and <stem>.json")
    parser.add_argument("--min-score", type=float, default=0.3, help="draw detections from this score on (JSON has all)")
    parser.add_argument("--proposals", type=Path, help="folder of precomputed <stem>.npy proposals (x1 y1 x2 y2)")
    parser.add_argument("--tta", action="store_true", help="ensemble over every scale of data.scales and the flip")
    parser.add_argument("--postprocess", help="none | segments | boxes | mcg:DIR (DIR/<stem>.mat): what replaces the "
                                              "masks (default: the checkpoint config's test.postprocess)")
    args = parser.parse_intermixed_args(argv)  # images and key=value items before and after the options
    overrides = [str(p) for p in args.inputs if "=" in str(p) and not p.exists()]
    inputs = [p for p in args.inputs if str(p) not in overrides]
    if args.tta:
        overrides += TTA_OVERRIDES
    try:
        model, cfg, classes = load_model(args.checkpoint, overrides)
        method = args.postprocess or cfg.test.postprocess
        check_postprocess(method)
        images = find_images(inputs)
    except (FileNotFoundError, ValueError, KeyError, WeightsUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    device = next(model.parameters()).device
    predictor = Predictor(model, cfg.test, device)
    scales, flip = test_views(cfg)
    paths = {p.stem: p for p in images}
    post = postprocess_detections(method, paths.__getitem__, cfg.test)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for n, path in enumerate(images, 1):
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except OSError as e:
            print(f"skipped {path}: cannot read it as an image ({e})", file=sys.stderr)
            failed += 1
            continue
        cached = args.proposals / f"{path.stem}.npy" if args.proposals else None
        if cached is not None and cached.is_file():
            boxes = np.load(cached)
        else:
            boxes = proposals_lib.selective_search(path, cfg.data.proposal_mode, cfg.data.proposal_scale)
        boxes = proposals_lib.filter_boxes(boxes, image.height, image.width, cfg.data.min_box, cfg.data.max_boxes)
        if len(boxes) == 0:
            print(f"skipped {path}: no proposals", file=sys.stderr)
            failed += 1
            continue
        views = image_views(image, boxes, torch.zeros(len(classes)), path.stem, scales, cfg.data.max_size, flip)
        det = predictor(views, (image.height, image.width))
        if post is not None:
            try:
                det = post(path.stem, det)
            except (OSError, ValueError) as e:  # e.g. mcg:DIR without this image's .mat
                print(f"skipped {path}: --postprocess {method}: {e}", file=sys.stderr)
                failed += 1
                continue
        overlay(image, det, classes, args.min_score).save(args.out / f"{path.stem}.png")
        entries = to_coco({path.stem: det})
        for e in entries:
            e["category_name"] = classes[e["category_id"] - 1]
        record = {"image": str(path), "postprocess": method, "detections": entries}
        (args.out / f"{path.stem}.json").write_text(json.dumps(record, indent=1))
        shown = int((det.scores >= args.min_score).sum())
        print(f"[{n}/{len(images)}] {path.name}: {len(det.scores)} detections, {shown} drawn -> {args.out / (path.stem + '.png')}")
    if failed:
        print(f"{failed} of {len(images)} images skipped", file=sys.stderr)
    sys.exit(1 if failed == len(images) else 0)


if __name__ == "__main__":
    main()
