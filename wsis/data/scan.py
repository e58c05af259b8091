"""Pre-flight scan of a split: every image decodes, every annotation reads (a VOC XML parses; a
COCO segmentation decodes), every proposals file fits its image, and for the split that a run
evaluates on, every ground-truth mask reads. Bad data is then reported with its path before the
first iteration rather than as a crash an hour into training (or at its end).

The scan decodes each JPEG at reduced size (PIL's draft mode reads the whole stream, so a
truncated file still fails, at a fraction of the cost). A passed scan is remembered in the
proposals folder under a digest of the files' sizes and modification times: the next run over
unchanged files skips it.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import List, Optional

import numpy as np
from PIL import Image

from ..progress import Progress
from . import proposals
from .formats import open_split

SHOWN = 10  # problems listed in the error; the rest are counted


class BadData(ValueError):
    """One or more files of a split cannot be trained on; the message lists them."""


def _fingerprint(paths: List[Path]) -> str:
    h = hashlib.sha1()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def _check_image(path: Path) -> tuple:
    with Image.open(path) as im:
        size = im.size
        im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        im.load()
    return size


def _check_proposals(path: Path, width: int, height: int, min_box: float) -> Optional[str]:
    try:
        boxes = np.load(path)
    except (OSError, ValueError) as e:
        return f"unreadable ({e})"
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.issubdtype(boxes.dtype, np.floating):
        return f"expected a float array [N, 4], got {boxes.dtype} {list(boxes.shape)}"
    if not np.isfinite(boxes).all():
        return "holds NaN or infinite coordinates"
    if len(boxes) and (boxes[:, 2].max() > width + 1 or boxes[:, 3].max() > height + 1 or boxes.min() < -1):
        return (f"boxes reach beyond the {width}x{height} image (x {boxes[:, 0::2].min():g}..{boxes[:, 0::2].max():g}, "
                f"y {boxes[:, 1::2].min():g}..{boxes[:, 1::2].max():g}): the proposals of another image?")  # fmt: skip
    if len(proposals.filter_boxes(boxes, height, width, min_box)) == 0:
        return f"no proposal of at least {min_box:g} pixels a side"
    return None


def scan(root: Path, split: str, mode: str = "fast", min_box: float = 8, progress: bool = True,
         ground_truth: bool = False, scale: float = 1.0, classes: str = "", negatives: bool = False):
    """Raises BadData naming every unusable image, annotation or proposals file of `split`, and
    with `ground_truth` every unreadable instance mask; returns the split's reader (for training,
    or with `ground_truth` for evaluation). A YOLO label file without an image is warned of."""
    data = open_split(root, split, training=not ground_truth, classes=classes, negatives=negatives)
    for orphan in data.orphan_labels() if hasattr(data, "orphan_labels") else []:
        warnings.warn(f"{orphan}: a label file without an image in the {split} split of {root}: left out", stacklevel=2)
    folder = proposals.cache_dir(root, mode, scale)
    npys = [proposals.cache_path(root, i, mode, scale) for i in data.image_ids]
    files = [f for i, npy in zip(data.image_ids, npys) for f in data.files(i, ground_truth) + [npy]]
    stamp = folder / f".scan-{hashlib.sha1(f'{split}{ground_truth}'.encode()).hexdigest()[:12]}.json"
    key = {"split": str(split), "ground_truth": ground_truth, "fingerprint": _fingerprint(files), "min_box": min_box,
           "classes": classes, "negatives": negatives}
    try:
        if json.loads(stamp.read_text()) == key:
            return data
    except (OSError, ValueError):
        pass
    problems = []
    bar = Progress(len(data.image_ids), f"checking {split}", "img", enabled=progress)
    for n, (image_id, npy) in enumerate(zip(data.image_ids, npys), 1):
        image = data.files(image_id)[0]
        try:
            width, height = _check_image(image)
        except (OSError, ValueError, SyntaxError) as e:  # missing, truncated or not an image
            problems.append(f"{image}: cannot decode ({e})")
            width = height = None
        try:
            data.check(image_id, ground_truth)
        except (OSError, ValueError) as e:  # the messages name the file
            problems.append(str(e))
        if not npy.is_file():
            how = (f" --mode {mode}" if mode != "fast" else "") + (f" --scale {scale:g}" if scale != 1 else "")
            problems.append(f"{npy}: missing (run python -m wsis.data.proposals --root {root} --split {split}{how})")
        elif width is not None:
            why = _check_proposals(npy, width, height, min_box)
            if why:
                problems.append(f"{npy}: {why}")
        bar.update(n)
    if problems:
        listed = "\n  ".join(problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise BadData(f"{len(problems)} problem(s) in the {split} split of {root}:\n  {listed}{more}")
    stamp.write_text(json.dumps(key))
    return data
