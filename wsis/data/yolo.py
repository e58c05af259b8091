"""Reader of an Ultralytics YOLO segmentation data set (docs/DATA.md, YOLO format).

The root holds `data.yaml`: `path` (the data set's folder, relative to the file's; absent or
absolute elsewhere: the root itself), a key per split (`train`, `val`, ...) naming an image folder,
a `.txt` list of images or a list of such, relative to `path`, and `names` (a list, or a dict
from index to name). Each image `.../images/.../<stem>.<ext>` has its labels in
`.../labels/.../<stem>.txt`: one instance a line, the class index then the polygon's `x y` pairs,
normalised to 0-1 by the image's width and height, or (the detection layout) the class index and
the box's `cx cy w h`, normalised alike. An image without a label file holds no object. A split
with a box line anywhere trains and is scored on boxes only (`has_masks` False).

It answers what `VOCDataset` answers. Image ids are the images' paths relative to `path` (the
proposals cache is keyed by them). `classes` keeps a subset of the names (comma-separated), or
`voc` maps COCO's names onto VOC's 20 classes; instances of other classes are left out. Training
reads only image-level labels and leaves out images with none of the kept classes (`skipped`).
Bad lines are collected, not raised, so that the pre-flight scan can list them all (`check`).
"""
import os
from pathlib import Path, PurePosixPath
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from .voc import VOC_CLASSES, Instances, OwnResultIds, header_size, masks_to_boxes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# COCO's names of VOC's classes where they differ (`classes=voc`)
VOC_NAMES_IN_COCO = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa", "dining table": "diningtable",
                     "potted plant": "pottedplant", "tv": "tvmonitor"}  # fmt: skip


def is_yolo_root(root: Union[str, Path]) -> bool:
    return (Path(root) / "data.yaml").is_file()


def select_classes(names: Sequence[str], classes: str) -> Tuple[Tuple[str, ...], Dict[int, int]]:
    """(the kept classes, source index -> 1-based kept index) for `data.classes`: "" keeps every
    name, "voc" VOC's 20 in VOC's order from COCO's names, "a,b" those names in that order."""
    if not classes:
        return tuple(names), {i: i + 1 for i in range(len(names))}
    if classes == "voc":
        kept = VOC_CLASSES
        index = {i: kept.index(VOC_NAMES_IN_COCO.get(n, n)) + 1 for i, n in enumerate(names)
                 if VOC_NAMES_IN_COCO.get(n, n) in kept}  # fmt: skip
        if not index:
            raise ValueError(f"data.classes=voc: none of the data set's names is a VOC class or COCO's name of one: {list(names)[:10]}")
        return kept, index
    kept = tuple(c.strip() for c in classes.split(",") if c.strip())
    unknown = [c for c in kept if c not in names]
    if unknown or len(set(kept)) != len(kept):
        raise ValueError(f"data.classes: {unknown or 'repeated names'} not among the data set's names {list(names)}")
    return kept, {names.index(c): k + 1 for k, c in enumerate(kept)}


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


class YOLODataset(OwnResultIds):
    """One split of a YOLO segmentation root (see the module's docstring)."""

    def __init__(self, root: Union[str, Path], split: str, training: bool = False, classes: str = ""):
        import yaml

        self.root, self.split = Path(root), str(split)
        self.yaml = self.root / "data.yaml"
        try:
            spec = yaml.safe_load(self.yaml.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"YOLO data set file not found: {self.yaml}") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"{self.yaml}: not a readable YAML file: {e}") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{self.yaml}: expected a mapping with 'names' and a key per split")
        self.names = self._names(spec.get("names"))
        self.classes, self._index = select_classes(self.names, classes)
        path = Path(str(spec.get("path") or "."))
        self.base = self.root / path if not path.is_absolute() else (path if path.is_dir() else self.root)
        if split not in spec or spec[split] in (None, ""):
            keys = [k for k in spec if k not in ("path", "names", "nc", "download")]
            raise ValueError(f"{self.yaml}: no split {split!r}; its splits are {keys}")
        self._images: Dict[str, Path] = {}
        self._folders: List[Path] = []  # the split's image folders (a .txt list names its images instead)
        for entry in spec[split] if isinstance(spec[split], list) else [spec[split]]:
            for image in self._list_images(Path(str(entry))):
                self._images.setdefault(PurePosixPath(os.path.relpath(image, self.base)).as_posix(), image)
        self._objects: Dict[str, List[Tuple[int, np.ndarray]]] = {}
        self._problems: Dict[str, List[str]] = {}
        self.has_masks = True  # until a box label is read
        for image_id, image in self._images.items():
            self._objects[image_id], self._problems[image_id] = self._read_labels(label_path(image))
        names = sorted(self._images)
        self.image_ids = [i for i in names if self._objects[i]] if training else names
        self.skipped = len(names) - len(self.image_ids)

    def _names(self, names) -> List[str]:
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise ValueError(f"{self.yaml}: 'names' as a dict needs the indices 0..{len(names) - 1}, got {sorted(names)[:10]}")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"{self.yaml}: 'names' must be a non-empty list (or index: name dict) of class names")
        return names

    def _list_images(self, entry: Path) -> List[Path]:
        where = self.base / entry
        if where.is_dir():
            self._folders.append(where)
            return sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if where.suffix == ".txt" and where.is_file():
            lines = [line.strip() for line in where.read_text().splitlines() if line.strip()]
            return [self.base / line if not Path(line).is_absolute() else Path(line) for line in lines]
        raise FileNotFoundError(f"{self.yaml}: the {self.split!r} split's {entry} is not a folder or a .txt list "
                                f"under {self.base}")  # fmt: skip

    def _read_labels(self, path: Path) -> Tuple[List[Tuple[int, np.ndarray]], List[str]]:
        """(kept class index, polygon [P, 2] normalised) of each usable line, and the bad lines."""
        if not path.is_file():
            return [], []
        objects, problems = [], []
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            return [], [f"{path}: unreadable ({e})"]
        for n, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}, line {n}"
            try:
                cls, coords = int(fields[0]), np.array([float(v) for v in fields[1:]], dtype=np.float64)
            except ValueError:
                problems.append(f"{where}: not a class index followed by numbers")
                continue
            if not 0 <= cls < len(self.names):
                problems.append(f"{where}: class index {cls} outside the {len(self.names)} names of {self.yaml}")
            elif len(coords) == 4:  # a box, cx cy w h: its corners, and no mask for the split
                cx, cy, bw, bh = coords
                if not np.isfinite(coords).all() or bw <= 0 or bh <= 0 or coords.min() < -0.01 or coords.max() > 1.01:
                    problems.append(f"{where}: a box (cx cy w h) must be normalised to 0-1 with w, h > 0, got "
                                    f"{' '.join(f'{v:g}' for v in coords)}")  # fmt: skip
                elif cls in self._index:
                    self.has_masks = False
                    corners = [[cx - bw / 2, cy - bh / 2], [cx + bw / 2, cy - bh / 2], [cx + bw / 2, cy + bh / 2],
                               [cx - bw / 2, cy + bh / 2]]  # fmt: skip
                    objects.append((self._index[cls], np.array(corners).clip(0, 1)))
            elif len(coords) % 2 or len(coords) < 6:
                problems.append(f"{where}: a polygon needs at least 3 x y pairs (or a box: cx cy w h), got "
                                f"{len(coords)} numbers")  # fmt: skip
            elif not np.isfinite(coords).all() or coords.min() < -0.01 or coords.max() > 1.01:
                problems.append(f"{where}: coordinates must be normalised to 0-1, got {coords.min():g}..{coords.max():g}")
            elif cls in self._index:
                objects.append((self._index[cls], coords.reshape(-1, 2).clip(0, 1)))
        return objects, problems

    def orphan_labels(self) -> List[Path]:
        """Label files in the label folders of the split's image folders whose image does not exist
        (none for a split of .txt lists: a list names its images, and others may share the folders)."""
        folders = {label_path(p).parent: p.parent for p in self._images.values()
                   if any(f in p.parents for f in self._folders)}  # fmt: skip
        return sorted(lab for labels, images in folders.items() if labels.is_dir() for lab in labels.glob("*.txt")
                      if not any((images / lab.stem).with_suffix(s).is_file() for s in IMAGE_SUFFIXES))  # fmt: skip

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: str) -> Path:
        path = self._images[image_id]
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        return path

    def image_size(self, image_id: str) -> Tuple[int, int]:
        return header_size(self.image_path(image_id))

    def files(self, image_id: str, ground_truth: bool = False) -> List[Path]:
        return [self._images[image_id], label_path(self._images[image_id])]

    def check(self, image_id: str, ground_truth: bool = False) -> None:
        """Raises a ValueError listing the image's bad label lines, each with its path and line."""
        if self._problems[image_id]:
            raise ValueError("\n  ".join(self._problems[image_id]))

    def labels(self, image_id: str) -> torch.Tensor:
        labels = torch.zeros(len(self.classes))
        for cls, _ in self._objects[image_id]:
            labels[cls - 1] = 1
        return labels

    def _pixels(self, image_id: str) -> Tuple[int, int, List[np.ndarray]]:
        h, w = self.image_size(image_id)
        return h, w, [poly * np.array([w, h]) for _, poly in self._objects[image_id]]

    def objects(self, image_id: str):
        """(class ids 1-based, the polygons' boxes [N,4] in pixels, ignore flags: none)."""
        _, _, polys = self._pixels(image_id)
        boxes = [[p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()] for p in polys]
        return (
            torch.tensor([c for c, _ in self._objects[image_id]], dtype=torch.int64),
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.zeros(len(boxes), dtype=torch.bool),
        )

    def instances(self, image_id: str) -> Instances:
        """The polygons rasterised (pycocotools, as COCO's), with their classes and tight boxes; no
        void. None in a split with box labels (`has_masks` False)."""
        from pycocotools import mask as mask_utils

        if not self.has_masks:
            return None

        h, w, polys = self._pixels(image_id)
        masks = np.zeros((len(polys), h, w), bool)
        for k, p in enumerate(polys):
            masks[k] = mask_utils.decode(mask_utils.frPyObjects([p.ravel().tolist()], h, w)[0]).astype(bool)
        masks_t = torch.from_numpy(masks)
        return Instances(
            masks=masks_t,
            classes=torch.tensor([c for c, _ in self._objects[image_id]], dtype=torch.int64),
            boxes=masks_to_boxes(masks_t),
            void=torch.zeros((h, w), dtype=torch.bool),
        )
