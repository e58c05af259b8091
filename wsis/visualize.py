"""Pictures of detections: masks in colour, boxes, class names and scores over the image.

    python -m wsis.visualize --predictions FILE.json --data ROOT [--split val] [--count 8 | --ids ID ...]
                             [--min-score 0.3] --out DIR [data.classes=...]

draws each image's ground truth (left) beside the detections of a COCO results file (right), as
detectron2's visualize_json_results: a run's `predictions.json` against its data, or any tool's.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .data.palette import voc_palette
from .inference import Detections


def overlay(image: Image.Image, det: Detections, classes: List[str], min_score: float, scores: bool = True) -> Image.Image:
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    palette = np.array(voc_palette()).reshape(-1, 3)[1:]
    keep = [i for i in range(len(det.scores)) if det.scores[i] >= min_score]
    for n, i in enumerate(keep):
        colour = palette[n % len(palette)].astype(np.float32)
        m = det.masks[i].numpy()
        rgb[m] = 0.45 * rgb[m] + 0.55 * colour
    out = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for n, i in enumerate(keep):
        colour = tuple(int(v) for v in palette[n % len(palette)])
        x1, y1, x2, y2 = det.boxes[i].tolist()
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=colour, width=2)
        label = classes[int(det.classes[i]) - 1] + (f" {float(det.scores[i]):.2f}" if scores else "")
        tw = draw.textlength(label)
        draw.rectangle([x1, max(0, y1 - 12), x1 + tw + 4, max(12, y1)], fill=colour)
        draw.text((x1 + 2, max(0, y1 - 12)), label, fill=(255, 255, 255))
    return out


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 4) -> Image.Image:
    out = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), (255, 255, 255))
    out.paste(left, (0, 0))
    out.paste(right, (left.width + gap, 0))
    return out


def save_pictures(dets: Dict[str, Detections], image_path: Callable[[str], Path], classes: List[str], out: Path,
                  count: int = 8, min_score: float = 0.2,
                  post: Optional[Callable[[str, Detections], Detections]] = None) -> None:  # fmt: skip
    """Overlays of the first `count` images (sorted ids) into `out` as `<id>.png` (a COCO file
    name's folders and extension become part of the name). With `post` (a `postprocess_detections`),
    the model's own masks on the left and the post-processed ones on the right."""
    out.mkdir(parents=True, exist_ok=True)
    for image_id in sorted(dets)[:count]:
        with Image.open(image_path(image_id)) as im:
            picture = overlay(im, dets[image_id], classes, min_score)
            if post is not None:
                picture = side_by_side(picture, overlay(im, post(image_id, dets[image_id]), classes, min_score))
        picture.save(out / f"{image_id.replace('/', '_')}.png")


def save_comparisons(dets: Dict[str, Detections], data, image_ids: Sequence[str], out: Path,
                     min_score: float = 0.3) -> List[Path]:  # fmt: skip
    """`<id>.png` in `out` for each of `image_ids`: the split's ground truth (left) beside `dets`
    (right, those scoring at least `min_score`; `from_coco` gives every image of the split its
    entry); returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for image_id in image_ids:
        inst = data.instances(image_id)
        if inst is None:  # a split with boxes only (VOC 2007): its boxes, without masks
            classes, boxes, _ = data.objects(image_id)
            height, width = data.image_size(image_id)
            truth = Detections(boxes, classes, torch.ones(len(classes)), torch.zeros(len(classes), height, width, dtype=torch.bool))
        else:
            truth = Detections(inst.boxes, inst.classes, torch.ones(len(inst.classes)), inst.masks)
        with Image.open(data.image_path(image_id)) as im:
            picture = side_by_side(overlay(im, truth, list(data.classes), 0, scores=False),
                                   overlay(im, dets[image_id], list(data.classes), min_score))  # fmt: skip
        files.append(out / f"{image_id.replace('/', '_')}.png")
        picture.save(files[-1])
    return files


def main(argv: Optional[List[str]] = None) -> None:
    from . import config as config_lib
    from .data.formats import open_split
    from .evaluation import from_coco

    parser = argparse.ArgumentParser(prog="python -m wsis.visualize",
                                     description="Ground truth beside the detections of a COCO results file.")  # fmt: skip
    parser.add_argument("--predictions", required=True, type=Path, help="a COCO results JSON (a run's predictions.json)")
    parser.add_argument("--data", required=True, type=Path, help="the data set root the predictions are of")
    parser.add_argument("--split", default="val", help="its split (default: val)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--count", type=int, default=8, help="the first N images of the split, by id (default: 8)")
    which.add_argument("--ids", nargs="+", help="these image ids instead")
    parser.add_argument("--min-score", type=float, default=0.3, help="draw the detections scoring at least this")
    parser.add_argument("--out", required=True, type=Path, help="where the pictures go")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.classes=voc for a YOLO root")
    args = parser.parse_args(argv)
    try:
        cfg = config_lib.load(None, [*args.overrides, f"data.root={args.data}"])
        data = open_split(args.data, args.split, classes=cfg.data.classes)
        known = set(data.image_ids)
        unknown = [i for i in args.ids or [] if i not in known]
        if unknown:
            raise ValueError(f"--ids: not images of {args.split}: {unknown[:5]}")
        files = save_comparisons(from_coco(args.predictions, data), data, args.ids or data.image_ids[: args.count],
                                 args.out, args.min_score)  # fmt: skip
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{len(files)} pictures (ground truth | predictions) in {args.out}")


def save_curves(log: Path, out: Path) -> None:
    """`log.jsonl` as a picture: each loss term and the val mAP^r@0.5 against iterations."""
    import matplotlib

    matplotlib.use("Agg")  # no display; writing a file only
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()] if log.is_file() else []
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "val_mAP@0.5" in r]
    if not train and not evals:
        return
    terms = [k for k in ("loss", "cls", "refine", "reg", "img", "seg", "pairwise") if train and k in train[0]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    window = 5  # each logged value is one iteration's: a running mean shows the trend
    for k in terms:
        values = np.array([r[k] for r in train], dtype=np.float64)
        smooth = np.convolve(values, np.ones(window), "valid") / window if len(values) >= window else values
        steps = [r["iteration"] for r in train][len(values) - len(smooth):]
        left.plot(steps, smooth, label=k, linewidth=2 if k == "loss" else 1)
    left.set(xlabel="iteration", ylabel="training loss", yscale="log", title=f"losses (mean of {window} log points)")
    left.legend(loc="upper right", fontsize=8)
    right.plot([r["iteration"] for r in evals], [r["val_mAP@0.5"] for r in evals], marker="o")
    last = max(r["iteration"] for r in train + evals)  # the losses' range: a lone final point sits at the end
    right.set(xlabel="iteration", ylabel="mAP$^r$@0.5 (%)", title="val mask mAP@0.5", ylim=(0, 100),
              xlim=(0, last * 1.05))
    right.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
