"""Pictures of detections: masks in colour, boxes, class names and scores over the image."""
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image, ImageDraw

from .data.palette import voc_palette
from .inference import Detections


def overlay(image: Image.Image, det: Detections, classes: List[str], min_score: float) -> Image.Image:
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
        label = f"{classes[int(det.classes[i]) - 1]} {float(det.scores[i]):.2f}"
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
