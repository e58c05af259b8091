"""A tags-only labels file (`wsis.data.tags`) written from a VOC-format split's annotations:

    python -m wsis.data.tags_from_voc --voc VOCdevkit/VOC2007 --split trainval --out trainval.csv [--classes a,b]

Each image's class names, as the VOC reader's image labels (difficult objects too); `--classes`
keeps only those (an image with none of them gets an empty field: a negative with
`data.negatives=true`, left out of training otherwise). The paths are relative to the tree, so the
file trains with `data.root=TREE data.train_split=FILE`.
"""
import argparse
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from .tags import class_list
from .voc import VOCDataset


def write_from_voc(data, out: Path, relative_to: Path, keep: Optional[Sequence[str]] = None) -> Path:
    """A CSV labels file of a VOC-format split (`VOCDataset`): its images' paths relative to
    `relative_to` and the class names present (difficult objects too, as the VOC reader's labels).
    `keep` (class names) writes only those classes: an image with none of them gets an empty field."""
    kept = set(data.classes if keep is None else keep)
    unknown = sorted(kept - set(data.classes))
    if unknown:
        raise ValueError(f"unknown class name(s) {', '.join(map(repr, unknown))}; the classes of {data.split} are "
                         f"{', '.join(data.classes)}")  # fmt: skip
    lines = ["image,labels"]
    for image_id in data.image_ids:
        present = [data.classes[i] for i in torch.nonzero(data.labels(image_id)).flatten().tolist()]
        lines.append(f"{Path(data.image_path(image_id)).resolve().relative_to(Path(relative_to).resolve()).as_posix()},"
                     + ";".join(n for n in present if n in kept))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.data.tags_from_voc", description="Write a tags-only labels file "
                                     "(CSV) from a VOC-format split's annotations.")  # fmt: skip
    parser.add_argument("--voc", required=True, type=Path, help="the VOC-format tree (its paths are relative to it)")
    parser.add_argument("--split", default="train", help="its list (ImageSets/Segmentation, else ImageSets/Main)")
    parser.add_argument("--out", required=True, type=Path, help="the CSV to write")
    parser.add_argument("--classes", default="", help="a,b: write only these classes' tags (default: all)")
    args = parser.parse_args(argv)
    try:
        data = VOCDataset(args.voc, args.split)
        out = write_from_voc(data, args.out, args.voc, class_list(args.classes))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"{out}: {len(data)} images of {args.split}; train with data.root={args.voc} data.train_split={out}")


if __name__ == "__main__":
    main()
