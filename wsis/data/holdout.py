"""Hold out a part of a YOLO root's split (docs/DATA.md, YOLO format):

    python -m wsis.data.holdout --root ROOT [--split train] --holdout 0.3 [--seed 0] --out DIR

writes DIR/data.yaml over the same images (its `path` absolute, so the root may be read-only):
`train` and `val` are `.txt` lists, a seeded draw of the split's images and the rest held out,
photos that a run on DIR never trains on.
"""
import argparse
import random
from pathlib import Path
from typing import List, Optional, Tuple, Union

from .yolo import YOLODataset


def write_holdout(root: Union[str, Path], split: str, out: Union[str, Path], fraction: float,
                  seed: int = 0) -> Tuple[List[str], List[str]]:  # fmt: skip
    """`out/data.yaml` whose `train` and `val` lists split `split`'s images at random (`seed`), a
    `fraction` of them held out as `val`; returns the two lists of image ids."""
    import yaml

    if not 0 < fraction < 1:
        raise ValueError(f"--holdout must lie in (0, 1), got {fraction}")
    data = YOLODataset(root, split)
    ids = list(data.image_ids)
    random.Random(seed).shuffle(ids)
    held = sorted(ids[: max(1, round(fraction * len(ids)))])
    train = sorted(ids[len(held):])
    if not train:
        raise ValueError(f"--holdout {fraction} of {len(ids)} images leaves none to train on")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.txt", train), ("holdout.txt", held)):
        (out / name).write_text("".join(f"{data.image_path(i).resolve()}\n" for i in part))
    spec = {"path": str(data.base.resolve()), "train": str(out / "train.txt"), "val": str(out / "holdout.txt"),
            "names": dict(enumerate(data.names))}  # fmt: skip
    (out / "data.yaml").write_text(f"# {len(held)} of the {len(ids)} images of {split} of {Path(root).resolve()} held "
                                   f"out (seed {seed})\n" + yaml.safe_dump(spec, sort_keys=False))  # fmt: skip
    return train, held


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.data.holdout", description="Hold out a part of a YOLO "
                                     "root's split: a data.yaml of its own over the same images.")  # fmt: skip
    parser.add_argument("--root", required=True, type=Path, help="the YOLO root (the folder of its data.yaml)")
    parser.add_argument("--split", default="train", help="the split to divide (default: train)")
    parser.add_argument("--holdout", required=True, type=float, help="the share of its images held out, e.g. 0.3")
    parser.add_argument("--seed", type=int, default=0, help="the draw (default: 0)")
    parser.add_argument("--out", required=True, type=Path, help="where data.yaml and the two lists go")
    args = parser.parse_args(argv)
    try:
        train, held = write_holdout(args.root, args.split, args.out, args.holdout, args.seed)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"{args.out / 'data.yaml'}: {len(train)} images to train on (split train), {len(held)} held out (split val)")


if __name__ == "__main__":
    main()
