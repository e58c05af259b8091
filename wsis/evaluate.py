"""python -m wsis.evaluate --checkpoint CKPT [--data ROOT] [--split val] [--tta] [--postprocess ...] [key=value ...]
python -m wsis.evaluate --predictions FILE.json --data ROOT [--split val] [--postprocess ...] [test.key=value ...]
python -m wsis.evaluate --checkpoint CKPT --oracle-boxes [--split val]
python -m wsis.evaluate --whole-image --data ROOT [--split val] [data.classes=...]

Scores a checkpoint (mAP^r at 0.25/0.5/0.75, ABO and detection mAP@0.5 on `--split`, its boxes
alone where it has no masks, CorLoc on
`--corloc-split`, by default the config's `test.corloc_split`) or a COCO-format predictions file made by
any tool. Prints a table and writes `metrics.json` and `predictions.json` (COCO results format
with RLE masks) into `--out`. `--oracle-boxes` scores the mask path alone, on the ground-truth
boxes; `--whole-image` the simplest baseline, the whole image as the one box and mask of each class
an image holds. The work is `wsis.evaluation`'s; this is its command line.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from . import config as config_lib
from .data import proposals
from .data.formats import open_split
from .data.prepare import synthetic_root
from .engine.checkpoint import load_model
from .evaluation import (check_postprocess, evaluate_model, from_coco, oracle_box_metrics, oracle_table,
                         postprocessed_metrics, score, table, whole_image_detections, write)
from .inference import TTA_OVERRIDES
from .model.backbone import WeightsUnavailable


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.evaluate", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a checkpoint written by python -m wsis.train")
    src.add_argument("--predictions", type=Path, help="a COCO results JSON (any tool's) to score instead")
    src.add_argument("--whole-image", action="store_true",
                     help="score the baseline a detector must beat: the whole image as the one box and mask of each "
                          "class present")  # fmt: skip
    parser.add_argument("--data", type=Path, help="VOC-format root (default: the checkpoint config's data)")
    parser.add_argument("--split", default="val",
                        help="split to score: with instance masks, or boxes only as VOC 2007's (default: val)")
    parser.add_argument("--corloc-split", help="split for CorLoc ('none': the --split; default: the config's "
                                               "test.corloc_split, itself the --split when empty)")
    parser.add_argument("--tta", action="store_true", help="ensemble over every scale of data.scales and the flip")
    parser.add_argument("--postprocess", help="none | segments (OpenCV graph segments) | mcg:DIR | boxes (each box "
                                              "filled in); scored beside the model's own masks (default: the "
                                              "config's test.postprocess; none for --predictions)")
    parser.add_argument("--oracle-boxes", action="store_true",
                        help="score the mask path alone: the model's masks on the ground-truth boxes and classes, "
                             "beside the same boxes filled in (writes oracle_boxes.json)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="where metrics.json and predictions.json go (default: next to the input)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. test.scales=[288]")
    args = parser.parse_args(argv)
    if args.oracle_boxes and args.predictions:
        parser.error("--oracle-boxes needs --checkpoint: it runs the model's mask path")
    try:
        if args.predictions or args.whole_image:
            if not args.data:
                parser.error(f"{'--predictions' if args.predictions else '--whole-image'} needs --data ROOT")
            # the post-processing's settings and data.classes
            cfg = config_lib.load(None, [*args.overrides, f"data.root={args.data}"])
            post = args.postprocess or "none"
            check_postprocess(post)
            data = open_split(args.data, args.split, classes=cfg.data.classes)
            dets = from_coco(args.predictions, data) if args.predictions else whole_image_detections(data)
            m = score(dets, data, None, None)
            m["split"], m["corloc_split"] = args.split, args.split
            if post != "none":
                m["postprocessed"] = postprocessed_metrics(dets, data, post, cfg.test)
            default = args.predictions.parent if args.predictions else Path("runs") / f"whole_image_{Path(args.split).stem}"
            out = args.out or default
            write(out, m)
        else:
            overrides = list(args.overrides) + (list(TTA_OVERRIDES) if args.tta else [])
            model, cfg, classes = load_model(args.checkpoint, overrides)
            root = args.data or Path(cfg.data.root or synthetic_root(cfg.data))
            out = args.out or args.checkpoint.parent.parent / f"eval_{Path(args.split).stem}"
            if args.oracle_boxes:
                proposals.compute(root, args.split, cfg.data.proposal_mode, scale=cfg.data.proposal_scale)
                m = oracle_box_metrics(model, cfg, root, args.split, next(model.parameters()).device, classes)
                out.mkdir(parents=True, exist_ok=True)
                (out / "oracle_boxes.json").write_text(json.dumps(m, indent=1) + "\n")
                print(oracle_table(m))
                print(f"metrics: {(out / 'oracle_boxes.json').resolve()}")
                return
            corloc_split = args.corloc_split if args.corloc_split is not None else cfg.test.corloc_split
            corloc_split = None if corloc_split in ("none", "") else corloc_split
            for split in {args.split, corloc_split} - {None}:
                proposals.compute(root, split, cfg.data.proposal_mode, scale=cfg.data.proposal_scale)
            post = args.postprocess or cfg.test.postprocess
            check_postprocess(post)
            m, dets, data = evaluate_model(model, cfg, root, args.split, corloc_split, next(model.parameters()).device, post,
                                           classes=classes)
            write(out, m, dets, data)
    except (FileNotFoundError, ValueError, KeyError, WeightsUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(table(m))
    print(f"metrics: {(out / 'metrics.json').resolve()}")


if __name__ == "__main__":
    main()
