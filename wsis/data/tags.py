"""Reader of a tags-only split: an image folder and one labels file, with no geometry at all.

Weak supervision needs only image tags ("this photo holds a dog and a person"). A labels file is

- a CSV with the header `image,labels`, then one image a line: its path relative to `data.root`
  and its class names separated by `;` (an empty field: the image holds none of the classes);
- or a JSON object from image path (relative to `data.root`) to a list of class names.

The classes are `data.classes` where it names them (`a,b,c`, or `voc` for VOC's 20), else every
name the file uses, sorted. Every problem of the file (an unknown class name, an image named twice,
an empty or malformed line, a path outside the folder) is reported at once, each with the file's
path and its line number as an editor shows it (the header is line 1); missing or unreadable images
are reported by the pre-flight scan (`wsis.data.scan`) with their paths.

A split of tags has no boxes and no masks: it trains, and it cannot be scored (`objects` and
`instances` have nothing; `has_boxes` is False).
"""
import csv
import io
import json
import re
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Tuple, Union

import torch

from .voc import VOC_CLASSES, OwnResultIds, header_size

SHOWN = 10  # problems listed in the error; the rest are counted


def is_tags_file(split: str) -> bool:
    """A split that names a `.csv` file, or a `.json` file that is not COCO's (no `"images": [` in
    its first 64 KiB, where COCO exports put the list of images)."""
    path = Path(str(split))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return True
    if suffix != ".json" or not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            head = f.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return False
    return re.search(r'"images"\s*:\s*\[', head) is None  # COCO's list of images comes first, after small headers


def class_list(classes: str) -> Optional[Tuple[str, ...]]:
    """`data.classes` as a list of names: `voc` for VOC's 20, `a,b` for those; None when empty."""
    if not classes:
        return None
    if classes == "voc":
        return VOC_CLASSES
    names = tuple(n.strip() for n in classes.split(",") if n.strip())
    if len(set(names)) != len(names):
        raise ValueError(f"data.classes={classes!r} names a class twice")
    return names


def _safe(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts


def _read_csv(where: Path, text: str) -> List[Tuple[int, str, List[str]]]:
    """(line number, image path, names) of each row of a CSV labels file; errors name the line."""
    lines = text.splitlines()
    if not lines or [c.strip().lower() for c in next(csv.reader([lines[0]]))] != ["image", "labels"]:
        raise ValueError(f"{where}:1: a labels CSV starts with the header line 'image,labels'")
    rows, problems = [], []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            problems.append(f"{where}:{number}: an empty line")
            continue
        fields = next(csv.reader(io.StringIO(line)))
        if len(fields) != 2 or not fields[0].strip():
            problems.append(f"{where}:{number}: expected 'image,labels' (two fields, the labels separated by ';'), "
                            f"got {line!r}")  # fmt: skip
            continue
        names = [n.strip() for n in fields[1].split(";") if n.strip()]
        rows.append((number, fields[0].strip(), names))
    if problems:
        raise ValueError(_listed(where, problems))
    return rows


class _Pairs(list):
    """A JSON object's (key, value) pairs in order, repeated keys kept (json's dict keeps the last)."""


def _read_json(where: Path, text: str) -> List[Tuple[int, str, List[str]]]:
    try:
        content = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(content, _Pairs):
        raise ValueError(f"{where}:1: a labels JSON is an object from image path to a list of class names")
    # the line of each key, for the messages: the k-th line that holds it as a JSON string, for its k-th time
    lines = text.splitlines()
    rows, problems, seen = [], [], {}
    for image, names in content:
        quoted = json.dumps(image)
        seen[image] = seen.get(image, 0) + 1
        holding = [n for n, line in enumerate(lines, 1) if quoted in line]
        number = holding[min(seen[image], len(holding)) - 1] if holding else 1
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            problems.append(f"{where}:{number}: {image!r} must map to a list of class names, got {names!r}")
            continue
        rows.append((number, image, [n.strip() for n in names if n.strip()]))
    if problems:
        raise ValueError(_listed(where, problems))
    return rows


def _listed(where: Path, problems: List[str]) -> str:
    more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"{len(problems)} problem(s) in the labels file {where}:\n  " + "\n  ".join(problems[:SHOWN]) + more


class TagsDataset(OwnResultIds):
    """The images and image-level labels of one labels file; `root` is the folder its paths are in.

    `training=True` leaves out images with no class (`skipped` counts them) unless `negatives`,
    which keeps them with all-zero labels (`data.negatives`)."""

    has_boxes = False
    has_masks = False

    def __init__(self, root: Union[str, Path], labels_file: Union[str, Path], training: bool = False,
                 classes: str = "", negatives: bool = False):  # fmt: skip
        self.root, self.labels_file, self.split = Path(root), Path(labels_file), str(labels_file)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data set root (the image folder) not found: {self.root}")
        where = self.labels_file
        try:
            text = where.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise FileNotFoundError(f"labels file not found: {where}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{where}: not a readable text file: {e}") from None
        rows = (_read_json if where.suffix.lower() == ".json" else _read_csv)(where, text)
        if not rows:
            raise ValueError(f"{where}: no image is listed")
        named = class_list(classes)
        self.classes = named if named is not None else tuple(sorted({n for _, _, names in rows for n in names}))
        if not self.classes:
            raise ValueError(f"{where}: no class is named, and data.classes names none")
        index = {n: i for i, n in enumerate(self.classes)}
        problems, first_line = [], {}
        self._labels: Dict[str, List[int]] = {}
        for number, image, names in rows:
            if not _safe(image):
                problems.append(f"{where}:{number}: the image path {image!r} must be relative and stay inside {self.root}")
                continue
            if image in first_line:
                problems.append(f"{where}:{number}: {image!r} is listed again (first on line {first_line[image]})")
                continue
            first_line[image] = number
            unknown = [n for n in names if n not in index]
            if unknown:
                problems.append(f"{where}:{number}: unknown class name(s) {', '.join(map(repr, unknown))}; the classes "
                                f"are {', '.join(self.classes)}")  # fmt: skip
                continue
            self._labels[image] = sorted({index[n] for n in names})
        if problems:
            raise ValueError(_listed(where, problems))
        names = list(self._labels)
        keep = (lambda i: True) if negatives or not training else (lambda i: bool(self._labels[i]))
        self.image_ids = [i for i in names if keep(i)]
        self.skipped = len(names) - len(self.image_ids)
        self._line = first_line

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: str) -> Path:
        path = self.root / image_id
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path} ({self.labels_file}:{self._line[image_id]})")
        return path

    def image_size(self, image_id: str) -> Tuple[int, int]:
        return header_size(self.image_path(image_id))

    def files(self, image_id: str, ground_truth: bool = False) -> List[Path]:
        return [self.root / image_id, self.labels_file]

    def check(self, image_id: str, ground_truth: bool = False) -> None:
        """The labels were checked when the file was read; with `ground_truth`, a tags split has none."""
        if ground_truth:
            raise ValueError(f"{self.labels_file}: a tags-only split has no boxes or masks to score; evaluate on a "
                             "split with boxes (a VOC list, a COCO JSON, a YOLO split), or set data.val_split= "
                             "(empty) to train without scoring")  # fmt: skip

    def labels(self, image_id: str) -> torch.Tensor:
        labels = torch.zeros(len(self.classes))
        labels[self._labels[image_id]] = 1
        return labels

    def objects(self, image_id: str):
        """No boxes: empty (class ids, boxes, ignore flags)."""
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), torch.zeros(0, dtype=torch.bool)

    def instances(self, image_id: str):
        return None
