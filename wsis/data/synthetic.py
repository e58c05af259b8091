"""A synthetic data set in PASCAL VOC format, the package's embedded default (docs/DESIGN.md §6).

    python -m wsis.data.synthetic --out DIR [--num-train N --num-val M --seed S ...]

Six classes told apart by shape alone: colours and textures are random for every instance, so
colour does not give the class. 1 to `max_instances` instances an image; with probability
`touch_prob` an instance is a same-class neighbour placed touching or overlapping an earlier
one. Backgrounds are textured clutter. No instance is hidden by more than half. Every image is
drawn from its own generator seeded by (seed, index): same settings, same bytes.
"""
import argparse
import json
import math
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..config import SyntheticSettings as Settings  # the generator's knobs live in the config
from ..progress import Progress
from .cache import pool_imap
from .palette import write_indexed_png
from .voc import VOID, masks_to_boxes

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")


def _polygon(kind: str, s: int, angle: float):
    c = (s - 1) / 2
    if kind == "square":
        pts = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
        r = 0.5 * s / math.sqrt(2)
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
        r = 0.5 * s
    elif kind == "star":
        pts = [
            ((1.0 if k % 2 == 0 else 0.42) * math.cos(math.pi / 2 + k * math.pi / 5),
             (1.0 if k % 2 == 0 else 0.42) * math.sin(math.pi / 2 + k * math.pi / 5))
            for k in range(10)
        ]  # fmt: skip
        r = 0.5 * s
    else:  # cross: a plus sign of arm half-width 0.3
        w = 0.3
        pts = [(w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w)]
        r = 0.5 * s / math.sqrt(1 + w * w)  # the arm corners reach radius sqrt(1 + w^2)
    ca, sa = math.cos(angle), math.sin(angle)
    return [(c + r * (x * ca - y * sa), c + r * (x * sa + y * ca)) for x, y in pts]


def shape_mask(kind: str, s: int, rng: np.random.Generator) -> np.ndarray:
    """A bool [s, s] mask of one shape, randomly rotated."""
    canvas = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "circle":
        draw.ellipse((0, 0, s - 1, s - 1), fill=1)
    elif kind == "ring":
        draw.ellipse((0, 0, s - 1, s - 1), fill=1)
        t = s * 0.25
        draw.ellipse((t, t, s - 1 - t, s - 1 - t), fill=0)
    else:
        draw.polygon(_polygon(kind, s, rng.uniform(0, 2 * math.pi)), fill=1)
    return np.array(canvas, dtype=bool)


def _colour(rng) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """float [h, w, 3]: stripes, checks or speckle in two random colours."""
    a, b = _colour(rng), _colour(rng)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        theta, period = rng.uniform(0, math.pi), rng.uniform(4, 14)
        t = (np.sin((x * math.cos(theta) + y * math.sin(theta)) * 2 * math.pi / period) > 0)[..., None]
    elif kind == 1:
        cell = rng.integers(3, 10)
        t = (((x // cell) + (y // cell)) % 2 == 0)[..., None]
    else:
        t = (rng.random((h, w)) < rng.uniform(0.2, 0.5))[..., None]
    return np.where(t, a, b) + rng.normal(0, 6, (h, w, 3))


def background(h: int, w: int, clutter: int, rng: np.random.Generator) -> np.ndarray:
    """float [h, w, 3]: smooth colour noise with random strokes and dots (never one of the shapes)."""
    low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.float32)
    canvas = Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(clutter):
        colour = tuple(int(v) for v in _colour(rng))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.7:
            length, angle = rng.uniform(10, 60), rng.uniform(0, 2 * math.pi)
            end = (x0 + length * math.cos(angle), y0 + length * math.sin(angle))
            draw.line([(x0, y0), end], fill=colour, width=int(rng.integers(1, 4)))
        else:
            r = rng.uniform(1.5, 4)
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
    return np.asarray(canvas, dtype=np.float32)


def _place(mask: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """The [s, s] mask pasted at (top, left) on an [h, w] canvas, clipped."""
    full = np.zeros((h, w), dtype=bool)
    s = mask.shape[0]
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + s, h), min(left + s, w)
    if t1 > t0 and l1 > l0:
        full[t0:t1, l0:l1] = mask[t0 - top : t1 - top, l0 - left : l1 - left]
    return full


def make_image(settings: Settings, rng: np.random.Generator):
    """(rgb uint8 [H,W,3], instance masks bool [N,H,W] in paint order, class ids 1-based [N])."""
    h, w = (int(v) for v in rng.integers(settings.min_image, settings.max_image + 1, 2))
    image = background(h, w, settings.clutter, rng)
    masks: List[np.ndarray] = []
    full_area: List[int] = []
    classes: List[int] = []
    centres: List[tuple] = []
    for k in range(int(rng.integers(1, settings.max_instances + 1))):
        s = int(rng.integers(settings.min_object, settings.max_object + 1))
        neighbour = k > 0 and rng.random() < settings.touch_prob
        cls = classes[int(rng.integers(len(classes)))] if neighbour else int(rng.integers(len(CLASSES))) + 1
        shape = shape_mask(CLASSES[cls - 1], s, rng)
        for _ in range(20):  # placements tried before the instance is dropped
            if neighbour:  # centre at 0.6 to 1.0 of the two radii from a same-class instance
                j = [i for i, c in enumerate(classes) if c == cls][int(rng.integers(classes.count(cls)))]
                cy, cx, sj = centres[j]
                d, a = rng.uniform(0.6, 1.0) * (s + sj) / 2, rng.uniform(0, 2 * math.pi)
                top, left = int(round(cy + d * math.sin(a) - s / 2)), int(round(cx + d * math.cos(a) - s / 2))
            else:
                top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            placed = _place(shape, top, left, h, w)
            area = int(placed.sum())
            # Keep it only if it stays mostly inside the image and hides no earlier instance by half.
            if area >= 0.7 * shape.sum() and all((m & ~placed).sum() >= 0.5 * a for m, a in zip(masks, full_area)):
                break
        else:
            continue
        masks = [m & ~placed for m in masks]
        masks.append(placed)
        full_area.append(area)
        classes.append(cls)
        centres.append((top + s / 2, left + s / 2, s))
        image[placed] = texture(h, w, rng)[placed]
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    return rgb, np.stack(masks), np.array(classes, dtype=np.int64)


def void_band(object_map: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` of a boundary between two different labels, objects' sides only."""
    if width == 0:
        return np.zeros(object_map.shape, dtype=bool)
    edge = np.zeros(object_map.shape, dtype=bool)
    for axis in (0, 1):
        diff = np.diff(object_map, axis=axis) != 0
        if axis == 0:
            edge[1:] |= diff
            edge[:-1] |= diff
        else:
            edge[:, 1:] |= diff
            edge[:, :-1] |= diff
    band = edge.copy()
    for _ in range(width - 1):
        grown = band.copy()
        grown[1:] |= band[:-1]
        grown[:-1] |= band[1:]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    return band & (object_map > 0)


def _annotation_xml(image_id: str, size, objects) -> str:
    h, w = size
    parts = [
        "<annotation>",
        "  <folder>wsis-synthetic</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>",
        "  <segmented>1</segmented>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        parts += [
            "  <object>",
            f"    <name>{name}</name>",
            "    <pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_sample(root: Path, image_id: str, rgb, masks, classes, void_width: int) -> None:
    h, w = rgb.shape[:2]
    object_map = np.zeros((h, w), dtype=np.uint8)
    for i, m in enumerate(masks):
        object_map[m] = i + 1
    class_map = np.zeros((h, w), dtype=np.uint8)
    for m, c in zip(masks, classes):
        class_map[m] = c
    void = void_band(object_map, void_width)
    object_map[void] = VOID
    class_map[void] = VOID
    # The boxes of the instances' annotated (non-void) pixels, so XML and masks agree exactly;
    # continuous (x1, y1, x2, y2) becomes VOC's 1-based inclusive (x1+1, y1+1, x2, y2).
    annotated = torch.from_numpy(np.stack([object_map == i + 1 for i in range(len(classes))]))
    objects = [
        (CLASSES[c - 1], (int(x1) + 1, int(y1) + 1, int(x2), int(y2)))
        for c, (x1, y1, x2, y2) in zip(classes, masks_to_boxes(annotated).tolist())
    ]
    Image.fromarray(rgb).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
    (root / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(image_id, (h, w), objects))
    write_indexed_png(root / "SegmentationObject" / f"{image_id}.png", object_map)
    write_indexed_png(root / "SegmentationClass" / f"{image_id}.png", class_map)


def _one_thread() -> None:
    torch.set_num_threads(1)  # the pool gives the parallelism


def _write_image(job) -> None:
    """Image `index` of the set, drawn from its own seed: any process writes the same one."""
    out, settings, index = job
    rgb, masks, classes = make_image(settings, np.random.default_rng([settings.seed, index]))
    write_sample(out, f"syn_{index:06d}", rgb, masks, classes, settings.void_width)


# below this many images the serial loop beats a pool's start-up (each worker imports torch)
POOL_FROM = 200


def generate(out: Path, settings: Settings, progress: bool = True, processes: Optional[int] = None) -> Path:
    """Write the data set into `out` (kept as is when it already holds one made with `settings`), in
    a pool of `processes` (default: one per CPU) from POOL_FROM images on."""
    settings.check()
    out = Path(out)
    stamp = out / "synthetic.json"
    if stamp.is_file():
        if json.loads(stamp.read_text()) == asdict(settings):
            return out
        raise FileExistsError(f"{out} holds a synthetic data set made with other settings ({stamp}); choose another --out")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose another --out")
    for sub in ("JPEGImages", "Annotations", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    total = settings.num_train + settings.num_val
    bar = Progress(total, "synthetic", "img", enabled=progress)
    jobs = [(out, settings, index) for index in range(total)]
    processes = processes or os.cpu_count() or 1
    if processes == 1 or total < POOL_FROM:
        for done, job in enumerate(jobs, 1):
            _write_image(job)
            bar.update(done)
    else:
        for done, _ in enumerate(pool_imap(_write_image, jobs, processes, _one_thread, chunksize=8), 1):
            bar.update(done)
    ids = [f"syn_{index:06d}" for index in range(total)]
    for split, part in (("train", ids[: settings.num_train]), ("val", ids[settings.num_train:])):
        (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(i + "\n" for i in part))
    (out / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    stamp.write_text(json.dumps(asdict(settings), indent=1) + "\n")  # last: marks the set complete
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write the VOC-format tree into")
    parser.add_argument("--format", choices=("voc", "coco"), default="voc",
                        help="coco also writes OUT/annotations/{train,val}.json (RLE masks, iscrowd 0) over "
                             "the same images, for data.root=OUT data.train_split=OUT/annotations/train.json")  # fmt: skip
    defaults = Settings()
    for f in fields(Settings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                            default=getattr(defaults, f.name), help=f"(default: {getattr(defaults, f.name)})")
    args = vars(parser.parse_args(argv))
    out, fmt = args.pop("out"), args.pop("format")
    try:
        generate(out, Settings(**args))
        if fmt == "coco":
            from .coco import voc_to_coco
            from .voc import VOCDataset

            for split in ("train", "val"):
                print(f"COCO annotations: {voc_to_coco(VOCDataset(out, split), out / 'annotations' / f'{split}.json')}")
    except (ValueError, FileExistsError) as e:
        parser.error(str(e))
    print(f"synthetic data set in {out}")


if __name__ == "__main__":
    main()
