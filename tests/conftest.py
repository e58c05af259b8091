"""Fixtures for the model, trainer and evaluation tests: a tiny synthetic data set with proposals,
and a VOC tree written by hand."""
import numpy as np
import pytest
from PIL import Image

from wsis import config as config_lib
from wsis.data.palette import write_indexed_png

# Every model is a timm backbone; the lean CPU-only torch has no timm (docs/INSTALL.md).
NO_TIMM = "timm is not installed (the lean CPU-only torch, see docs/INSTALL.md): no model to build"


def needs_timm():
    """Skips the calling test, fixture or module where timm is missing."""
    pytest.importorskip("timm", reason=NO_TIMM)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    pytest.importorskip("cv2", reason="opencv-contrib-python-headless is not installed")
    from wsis.data import proposals
    from wsis.data.synthetic import Settings, generate

    root = generate(tmp_path_factory.mktemp("tiny") / "data", Settings(num_train=6, num_val=3, min_image=96,
                    max_image=128, min_object=32, max_object=64, max_instances=2), progress=False)  # fmt: skip
    for split in ("train", "val"):  # the configs' default scale, and the functions' (1)
        for scale in {1.0, config_lib.Config().data.proposal_scale}:
            proposals.compute(root, split, jobs=1, progress=False, scale=scale)
    return root


def tiny_config(root, out, *overrides):
    """A config small enough to train for a few iterations in seconds."""
    return config_lib.load(None, [
        f"data.root={root}", f"output_dir={out}", "data.scales=[96,112]", "data.max_boxes=40", "data.workers=0",
        "model.backbone.weights=none", "model.img_dim=16", "model.seg_dim=16", "model.regressor_dim=16",
        "solver.max_iter=4", "solver.checkpoint_period=2", "solver.log_period=1", "solver.warmup_iters=0",
        "test.scales=[112]", "test.flip=false", "test.max_detections=10", *overrides])  # fmt: skip


def hand_written_voc(root):
    """A tiny VOC tree written by hand: 2 objects (one difficult), a void band, the VOC palette."""
    for sub in ("JPEGImages", "Annotations", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.full((6, 8, 3), 128, np.uint8)).save(root / "JPEGImages" / "2007_000001.jpg")
    (root / "Annotations" / "2007_000001.xml").write_text(
        "<annotation><object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>3</xmax><ymax>4</ymax></bndbox></object><object><name>person</name><difficult>1</difficult>"
        "<bndbox><xmin>5</xmin><ymin>1</ymin><xmax>8</xmax><ymax>6</ymax></bndbox></object></annotation>"
    )
    objects = np.zeros((6, 8), np.uint8)
    objects[1:4, 0:3] = 1
    objects[0:6, 4:8] = 2
    objects[0, 0] = 255
    classes = np.where(objects == 1, 12, np.where(objects == 2, 15, objects)).astype(np.uint8)
    write_indexed_png(root / "SegmentationObject" / "2007_000001.png", objects)
    write_indexed_png(root / "SegmentationClass" / "2007_000001.png", classes)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n")
    return objects
