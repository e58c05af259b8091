"""Reader of a PASCAL VOC-format tree (VOC 2012, VOC 2007, or the synthetic set).

Training reads only image-level labels (from `Annotations/*.xml`); evaluation reads instance
masks (`SegmentationObject`: instance i+1 is the i-th XML object, 0 background, 255 void), their
classes (`SegmentationClass`) and boxes. A split is a list in `ImageSets/Segmentation` (VOC 2012's
instance-segmentation lists) or, where that has none of its name, in `ImageSets/Main` (the detection
lists: VOC 2007's trainval, whose images have boxes only). A tree without `SegmentationObject`
has box ground truth only (`has_masks` is False): evaluation scores boxes and says masks are not scored.
"""
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .palette import read_indexed_png

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

VOID = 255


@dataclass
class Instances:
    """The ground-truth instances of one image."""

    masks: torch.Tensor  # bool [N, H, W]
    classes: torch.Tensor  # int64 [N], 1-based category ids
    boxes: torch.Tensor  # float32 [N, 4], x1 y1 x2 y2 in continuous pixels
    void: torch.Tensor  # bool [H, W], pixels that evaluation ignores


def read_list(path: Path, what: str = "split file") -> List[str]:
    """The non-empty, stripped lines of a list file (a split, classes.txt)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def instance_masks(id_map: np.ndarray):
    """(ids, bool masks [N, H, W]) of the instances of an id map; 0 is background, VOID is void."""
    ids = [int(i) for i in np.unique(id_map) if 0 < i < VOID]
    masks = np.stack([id_map == i for i in ids]) if ids else np.zeros((0,) + id_map.shape, dtype=bool)
    return ids, masks


def _text(node, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"{path}: <{tag}> is missing")
    return child.text.strip()


def read_annotation(path: Path, classes: Sequence[str]):
    """The objects of one VOC XML: (class ids 1-based, boxes [N,4] continuous, difficult flags)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation not found: {path}") from None
    except ET.ParseError as e:
        raise ValueError(f"{path}: not a valid VOC annotation: {e}") from e
    ids, boxes, difficult = [], [], []
    for obj in root.findall("object"):
        name = _text(obj, "name", path)
        if name not in classes:
            raise ValueError(f"{path}: unknown class name {name!r}; the data set's classes are {list(classes)}")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: an <object> has no <bndbox>")
        # VOC boxes are 1-based inclusive pixels: pixel columns xmin..xmax span [xmin-1, xmax).
        x1, y1, x2, y2 = (float(_text(box, t, path)) for t in ("xmin", "ymin", "xmax", "ymax"))
        ids.append(classes.index(name) + 1)
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        flag = obj.find("difficult")
        difficult.append(flag is not None and flag.text is not None and flag.text.strip() == "1")
    return (
        torch.tensor(ids, dtype=torch.int64),
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.tensor(difficult, dtype=torch.bool),
    )


class OwnResultIds:
    """Ids in results files as a reader keeps them: its own image ids, and 1-based class indices
    (VOC, YOLO and tags readers; COCO's reader writes COCO's own ids back instead)."""

    classes: Tuple[str, ...]

    def result_image_id(self, image_id: str) -> str:
        return image_id

    def result_category_id(self, index: int) -> int:
        return index

    def image_id_of(self, result_image_id) -> str:
        return str(result_image_id)

    def category_index(self, result_category_id) -> int:
        return result_category_id if 1 <= result_category_id <= len(self.classes) else 0


class VOCDataset(OwnResultIds):
    """Image ids, image-level labels and instance ground truth of one split of a VOC-format tree.

    `classes` defaults to the tree's `classes.txt` (the synthetic set writes one) or else VOC's 20.
    Splits are read from `ImageSets/Segmentation/<split>.txt`, else `ImageSets/Main/<split>.txt`.
    """

    def __init__(self, root: Union[str, Path], split: str, classes: Sequence[str] = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data set root not found: {self.root}")
        self.split = split
        self.classes = tuple(classes) if classes is not None else self._read_classes()
        self.image_ids = read_list(split_path(self.root, split))
        self.has_masks = (self.root / "SegmentationObject").is_dir()
        self.skipped = 0  # images a training split leaves out (COCO's without labels; none here)

    def _read_classes(self):
        path = self.root / "classes.txt"
        if path.is_file():
            return tuple(read_list(path))
        return VOC_CLASSES

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: str) -> Path:
        path = self.root / "JPEGImages" / f"{image_id}.jpg"
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        return path

    def image_size(self, image_id: str) -> Tuple[int, int]:
        return header_size(self.image_path(image_id))

    def annotation_path(self, image_id: str) -> Path:
        return self.root / "Annotations" / f"{image_id}.xml"

    def files(self, image_id: str, ground_truth: bool = False) -> List[Path]:
        """The files this image's sample is made of (the pre-flight scan's fingerprint); with
        `ground_truth`, the instance masks that evaluation reads as well."""
        files = [self.root / "JPEGImages" / f"{image_id}.jpg", self.annotation_path(image_id)]
        if ground_truth and self.has_masks:
            files += [self.root / sub / f"{image_id}.png" for sub in ("SegmentationObject", "SegmentationClass")]
        return files

    def check(self, image_id: str, ground_truth: bool = False) -> None:
        """Parses the image's XML, and with `ground_truth` reads its instance masks: a ValueError or
        FileNotFoundError names the file."""
        self.objects(image_id)
        if ground_truth:
            self.instances(image_id)

    def objects(self, image_id: str):
        """(class ids 1-based, boxes [N,4] continuous, ignore flags): VOC's difficult objects are ignored."""
        return read_annotation(self.annotation_path(image_id), self.classes)

    def labels(self, image_id: str) -> torch.Tensor:
        """Image-level labels, float32 [C] with 1 for every class present (difficult objects too)."""
        ids, _, _ = self.objects(image_id)
        labels = torch.zeros(len(self.classes))
        labels[ids - 1] = 1
        return labels

    def instances(self, image_id: str) -> Instances:
        """Instance masks and their classes and boxes, from the segmentation PNGs; None in a tree
        without them (`has_masks` False)."""
        if not self.has_masks:
            return None
        objects = read_indexed_png(self.root / "SegmentationObject" / f"{image_id}.png")
        semantic = read_indexed_png(self.root / "SegmentationClass" / f"{image_id}.png")
        if objects.shape != semantic.shape:
            raise ValueError(
                f"{image_id}: SegmentationObject {objects.shape} and SegmentationClass {semantic.shape} differ in size"
            )
        ids, masks = instance_masks(objects)
        classes = []
        for i, mask in zip(ids, masks):
            values = np.unique(semantic[mask])
            if len(values) != 1 or not 0 < values[0] <= len(self.classes):
                raise ValueError(f"{image_id}: instance {i} has class values {values.tolist()} in SegmentationClass")
            classes.append(int(values[0]))
        masks_t = torch.from_numpy(masks)
        return Instances(
            masks=masks_t,
            classes=torch.tensor(classes, dtype=torch.int64),
            boxes=masks_to_boxes(masks_t),
            void=torch.from_numpy(objects == VOID),
        )


def split_path(root: Path, split: str) -> Path:
    """The list file of `split`: `ImageSets/Segmentation/<split>.txt`, else `ImageSets/Main/<split>.txt`;
    a FileNotFoundError names both where neither exists."""
    lists = [Path(root) / "ImageSets" / sub / f"{split}.txt" for sub in ("Segmentation", "Main")]
    for path in lists:
        if path.is_file():
            return path
    raise FileNotFoundError(f"split {split!r} not found in {root}: neither {lists[0]} nor {lists[1]} exists")


def header_size(path: Path) -> Tuple[int, int]:
    """(height, width) of an image, from its header."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes [N,4] (continuous pixels: a mask spanning columns a..b gives x1=a, x2=b+1)."""
    boxes = torch.zeros(len(masks), 4)
    for i, m in enumerate(masks):
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(xs):
            boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
    return boxes
