"""Reader of a COCO-format split: an image folder and one annotation JSON (docs/DESIGN.md §4).

It answers what `VOCDataset` answers, so training, proposals, evaluation and prediction do not
care which format a split is in. Our image ids are the images' `file_name`s (which may hold
folders); the proposals cache is keyed by them. Classes are the JSON's categories in its order,
whatever their ids (COCO's are not contiguous); results are written back with the original image
and category ids.

Training reads only image-level labels: the categories with at least one non-crowd annotation in
an image. An annotation may carry no geometry at all (an image-level tag: only `image_id` and
`category_id`) or a `bbox` without a `segmentation`: such a file trains; a split whose
annotations all have a segmentation is scored on masks and boxes, one whose annotations all have a
box or a segmentation on boxes only (`has_masks` False), and one with tags only cannot be scored. A training split leaves out images with none (`skipped` counts them). For evaluation,
crowd regions are void for our VOC-rule metrics and crowd boxes are ignored as VOC's difficult
ones; COCO's own evaluator handles crowd as COCO does.
"""
import json
from pathlib import Path, PurePosixPath
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from .voc import Instances, masks_to_boxes


def _rle(segmentation, height: int, width: int):
    """A compressed RLE of any COCO segmentation: polygons, uncompressed or compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons: one RLE per polygon, merged
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        counts = segmentation["counts"]
        return {"size": segmentation["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    raise ValueError(f"not a polygon list or an RLE: {str(segmentation)[:80]}")


class COCODataset:
    """The images and annotations of one COCO-format JSON; `root` is the folder `file_name`s are in."""

    def __init__(self, root: Union[str, Path], annotations: Union[str, Path], training: bool = False):
        self.root, self.annotation_file, self.split = Path(root), Path(annotations), str(annotations)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data set root (the image folder) not found: {self.root}")
        where = self.annotation_file
        try:
            content = json.loads(where.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"COCO annotation file not found: {where}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{where}: not a readable JSON file: {e}") from None
        if not isinstance(content, dict) or not all(isinstance(content.get(k), list) for k in ("images", "annotations", "categories")):
            raise ValueError(f"{where}: a COCO annotation file needs the lists 'images', 'annotations' and 'categories'")
        self.category_ids, classes = [], []
        for n, cat in enumerate(content["categories"]):
            if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
                raise ValueError(f"{where}: categories[{n}] needs an integer 'id' and a 'name'")
            self.category_ids.append(cat["id"])
            classes.append(cat["name"])
        if not classes or len(set(self.category_ids)) != len(classes):
            raise ValueError(f"{where}: the categories must be non-empty with distinct ids")
        self.classes = tuple(classes)
        self._index_of_category = {c: i + 1 for i, c in enumerate(self.category_ids)}
        self._images: Dict[str, dict] = {}
        self._by_coco_id: Dict[int, str] = {}
        for n, im in enumerate(content["images"]):
            name = im.get("file_name") if isinstance(im, dict) else None
            if not isinstance(name, str) or not all(isinstance(im.get(k), int) for k in ("id", "height", "width")):
                raise ValueError(f"{where}: images[{n}] needs a 'file_name' and integer 'id', 'height' and 'width'")
            parts = PurePosixPath(name).parts
            if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
                raise ValueError(f"{where}: images[{n}] file_name {name!r} must be a relative path inside the image folder")
            if name in self._images or im["id"] in self._by_coco_id:
                raise ValueError(f"{where}: images[{n}] repeats the file_name {name!r} or the id {im['id']}")
            self._images[name] = im
            self._by_coco_id[im["id"]] = name
        self._annotations: Dict[str, List[dict]] = {name: [] for name in self._images}
        for n, ann in enumerate(content["annotations"]):
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: annotations[{n}] is not an object")
            what = f"{where}: annotations[{n}] (id {ann.get('id')})"
            if ann.get("image_id") not in self._by_coco_id:
                raise ValueError(f"{what} names image_id {ann.get('image_id')}, which is not in 'images'")
            if ann.get("category_id") not in self._index_of_category:
                raise ValueError(f"{what} names category_id {ann.get('category_id')}, which is not in 'categories'")
            bbox = ann.get("bbox")
            if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4):
                raise ValueError(f"{what} has a 'bbox' that is not [x, y, width, height]")
            self._annotations[self._by_coco_id[ann["image_id"]]].append(ann)
        self._content = content
        anns = content["annotations"]
        self.has_masks = all("segmentation" in a for a in anns)
        self.has_boxes = all("segmentation" in a or a.get("bbox") is not None for a in anns)
        names = list(self._images)
        self.image_ids = [i for i in names if self._labelled(i)] if training else names
        self.skipped = len(names) - len(self.image_ids)

    def _labelled(self, image_id: str) -> bool:
        return any(not a.get("iscrowd", 0) for a in self._annotations[image_id])

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: str) -> Path:
        path = self.root / self._images[image_id]["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path} ({self.annotation_file}, image id {self.result_image_id(image_id)})")
        return path

    def image_size(self, image_id: str) -> Tuple[int, int]:
        im = self._images[image_id]
        return im["height"], im["width"]

    def files(self, image_id: str, ground_truth: bool = False) -> List[Path]:
        """The files this image's sample is made of (the pre-flight scan's fingerprint); the masks
        that evaluation reads are in the same annotation file."""
        return [self.root / self._images[image_id]["file_name"], self.annotation_file]

    def labels(self, image_id: str) -> torch.Tensor:
        """Image-level labels, float32 [C]: 1 for every category with a non-crowd annotation."""
        labels = torch.zeros(len(self.classes))
        for a in self._annotations[image_id]:
            if not a.get("iscrowd", 0):
                labels[self._index_of_category[a["category_id"]] - 1] = 1
        return labels

    def _masks(self, image_id: str, anns: Sequence[dict]) -> np.ndarray:
        from pycocotools import mask as mask_utils

        h, w = self.image_size(image_id)
        out = np.zeros((len(anns), h, w), bool)
        for k, a in enumerate(anns):
            try:
                out[k] = mask_utils.decode(_rle(a["segmentation"], h, w)).astype(bool).reshape(h, w)
            except Exception as e:  # pycocotools raises whatever its C code meets: name the entry
                raise ValueError(f"{self.annotation_file}: the segmentation of annotation id {a.get('id')} "
                                 f"(image {image_id}) cannot be decoded: {e}") from None  # fmt: skip
        return out

    def check(self, image_id: str, ground_truth: bool = False) -> None:
        """Decodes every segmentation of the image, which is all that `instances` reads too: a
        ValueError names the file and the annotation. With `ground_truth`, a file with annotations
        that have neither a box nor a segmentation is refused: it cannot be scored."""
        if ground_truth and not self.has_boxes:
            raise ValueError(f"{self.annotation_file}: some annotations have neither a 'bbox' nor a 'segmentation' "
                             "(image-level tags): the split trains but cannot be scored")  # fmt: skip
        self._masks(image_id, [a for a in self._annotations[image_id] if "segmentation" in a])

    def _xywh(self, ann: dict) -> List[float]:
        """The annotation's bbox, or its segmentation's where the export left the bbox out."""
        if ann.get("bbox") is not None:
            return [float(v) for v in ann["bbox"]]
        if "segmentation" not in ann:
            raise ValueError(f"{self.annotation_file}: annotation id {ann.get('id')} has neither a 'bbox' nor a "
                             "'segmentation': an image-level tag has no box to score")  # fmt: skip
        from pycocotools import mask as mask_utils

        im = self._images[self._by_coco_id[ann["image_id"]]]
        return [float(v) for v in mask_utils.toBbox(_rle(ann["segmentation"], im["height"], im["width"]))]

    def objects(self, image_id: str):
        """(class ids 1-based, boxes [N,4] x1 y1 x2 y2, ignore flags): crowd boxes are ignored."""
        anns = self._annotations[image_id]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in map(self._xywh, anns)]
        return (
            torch.tensor([self._index_of_category[a["category_id"]] for a in anns], dtype=torch.int64),
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.tensor([bool(a.get("iscrowd", 0)) for a in anns], dtype=torch.bool),
        )

    def instances(self, image_id: str) -> Instances:
        """Masks of the non-crowd annotations with their classes and tight boxes; crowd regions are
        void. None where the file's annotations are not all masks (`has_masks` False)."""
        if not self.has_masks:
            return None
        anns = self._annotations[image_id]
        plain = [a for a in anns if not a.get("iscrowd", 0)]
        masks = torch.from_numpy(self._masks(image_id, plain))
        crowd = self._masks(image_id, [a for a in anns if a.get("iscrowd", 0)])
        h, w = self.image_size(image_id)
        return Instances(
            masks=masks,
            classes=torch.tensor([self._index_of_category[a["category_id"]] for a in plain], dtype=torch.int64),
            boxes=masks_to_boxes(masks),
            void=torch.from_numpy(crowd.any(0) if len(crowd) else np.zeros((h, w), bool)),
        )

    def coco_api(self):
        """pycocotools' COCO over this file, with the fields COCOeval needs and exports often omit
        (`area`, `bbox`, `iscrowd`) filled in from the segmentations."""
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO

        anns = []
        for a in self._content["annotations"]:
            if "area" not in a and "segmentation" in a:
                im = self._images[self._by_coco_id[a["image_id"]]]
                a = {**a, "area": float(mask_utils.area(_rle(a["segmentation"], im["height"], im["width"])))}
            elif "area" not in a:
                a = {**a, "area": float(a["bbox"][2] * a["bbox"][3])}
            anns.append({"iscrowd": 0, **a, "bbox": self._xywh(a)})
        api = COCO()
        api.dataset = {**self._content, "annotations": anns}
        api.createIndex()
        return api

    # ids in results files: COCO's own
    def result_image_id(self, image_id: str) -> int:
        return self._images[image_id]["id"]

    def result_category_id(self, index: int) -> int:
        return self.category_ids[index - 1]

    def image_id_of(self, result_image_id) -> str:
        return self._by_coco_id.get(result_image_id, "")

    def category_index(self, result_category_id) -> int:
        return self._index_of_category.get(result_category_id, 0)


def voc_to_coco(data, out: Path) -> Path:
    """Writes a VOC-format split (a `VOCDataset`) as a COCO JSON: images named `JPEGImages/<id>.jpg`
    relative to the tree's root, one RLE annotation an instance (`iscrowd` 0), void left out."""
    from pycocotools import mask as mask_utils

    images, annotations = [], []
    for n, image_id in enumerate(data.image_ids, 1):
        h, w = data.image_size(image_id)
        images.append({"id": n, "file_name": f"JPEGImages/{image_id}.jpg", "height": h, "width": w})
        inst = data.instances(image_id)
        for mask, cls in zip(inst.masks.numpy(), inst.classes.tolist()):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": int(cls), "iscrowd": 0,
                                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})  # fmt: skip
    categories = [{"id": i, "name": name} for i, name in enumerate(data.classes, 1)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    tmp.replace(out)
    return out
