"""The one config system: nested dataclasses, YAML files that override them, `key=value` overrides.

The dataclass defaults are the CPU default (synthetic data, small backbone); `configs/*.yaml` files
override any subset. A key that does not exist is an error listing the valid keys; a value is
converted to the type of its default, and one that cannot be is an error naming the key.
"""
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

# What the model can build; `wsis.model.backbone` splits exactly these (a test holds the two together).
BACKBONES = ("resnet18", "resnet50", "resnet101", "resnet50_gn", "efficientnet_lite0")
FRAME_DTYPES = ("auto", "bfloat16", "same")  # model.frame_dtype; same: the model's dtype (AMP's, if on)
FREEZE_LEVELS = ("0", "1", "2", "3", "4", "all")  # stages frozen: stem, res2, res3, res4 (the trunk), all (+head)



def check_backbone_name(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"model.backbone.name: unsupported backbone {name!r}; supported: {', '.join(BACKBONES)}")


def check_freeze_at(freeze_at: str) -> None:
    if freeze_at not in FREEZE_LEVELS:
        raise ValueError(f"model.backbone.freeze_at must be one of {', '.join(FREEZE_LEVELS)}, got {freeze_at!r}")


@dataclass
class SyntheticSettings:
    """The synthetic generator's knobs (`wsis.data.synthetic`), as `data.synthetic.*` keys."""

    num_train: int = 800  # 200 were memorised rather than learned (measured)
    num_val: int = 150
    seed: int = 0
    min_image: int = 192  # image sides, pixels
    max_image: int = 288
    max_instances: int = 4
    min_object: int = 40  # object extent, pixels
    max_object: int = 110
    touch_prob: float = 0.5  # chance an instance is a touching/overlapping same-class neighbour
    clutter: int = 30  # clutter strokes in the background
    void_width: int = 1  # VOC-style void band (255) along instance boundaries; 0 for none

    def check(self) -> None:
        if self.num_train < 0 or self.num_val < 0:
            raise ValueError("num_train and num_val must be >= 0")
        if not 32 <= self.min_image <= self.max_image:
            raise ValueError(f"need 32 <= min_image <= max_image, got {self.min_image}, {self.max_image}")
        if not 8 <= self.min_object <= self.max_object <= self.min_image:
            raise ValueError(
                f"need 8 <= min_object <= max_object <= min_image, got {self.min_object}, {self.max_object}, "
                f"{self.min_image}"
            )
        if self.min_object <= 8 * self.void_width:
            raise ValueError(f"min_object must exceed 8 x void_width (a ring's band survives its void band), "
                             f"got {self.min_object} and {self.void_width}")
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {self.max_instances}")
        if not 0 <= self.touch_prob <= 1:
            raise ValueError(f"touch_prob must lie in [0, 1], got {self.touch_prob}")
        if self.clutter < 0 or self.void_width < 0:
            raise ValueError("clutter and void_width must be >= 0")


@dataclass
class BackboneConfig:
    name: str = "efficientnet_lite0"  # a timm model: resnet18, resnet50, resnet101, resnet50_gn, efficientnet_lite0
    weights: str = "imagenet"  # imagenet, none (random init) or a local state dict (torchvision or timm names)
    # Frozen stages: 0 none, 1 the stem, 2 + res2, 3 + res3, 4 the whole trunk, all + the head (res5).
    freeze_at: str = "2"  # the CPU default trains res3 and res4, which the detector, IMG and segmentation share
    freeze_head: bool = True  # keep the head's (res5's) ImageNet weights while the trunk trains
    # The head's last residual blocks (input shape = output shape) left out: a lighter per-roi head
    head_skip: int = 0


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    refine_branches: int = 3  # K in Eq.6
    head_pool: int = 7  # side of the res4 roi_pool grid that the per-roi head (res5) runs on
    res5_stride: int = 2  # stride of the head on the pooled grid: 1 keeps its size (3x the CPU time at 7)
    img: bool = True  # the instance mask generation module (Sec. 3.2.2)
    seg: bool = True  # the instance segmentation head (Sec. 3.2.3); needs img
    regressor: str = "agnostic"  # "agnostic" (the paper), "specific" (Table 6) or "none"
    regressor_dim: int = 256  # width of the regressor's hidden FC layer
    img_background: bool = True  # Table 4: background CAM channel
    img_weighted_gap: bool = True  # Table 4: weighted GAP (else plain GAP)
    img_log_smoothing: bool = True  # Table 4: log(1 + f) feature smoothing
    img_dim: int = 32  # channels of each IMG level's conv
    gap_sigma: float = 7.0  # sigma of the weighted GAP's Gaussian, in 28x28 grid cells
    seg_dim: int = 32  # channels of the segmentation head's convs
    # The segmentation head also reads res3 pooled to T x T (a conv added to its first layer's): cells
    # four times finer than res5's. Not in the paper, whose head reads res5 only (Sec. 3.2.3; the VOC
    # config keeps that). On the CPU default's robustness grid: own masks' mAP^r@0.5 81.6 against 75.4
    # in the mean, mAP^r@0.75 36.0 against 18.9 (docs/ABLATIONS.md)
    seg_res3: bool = True
    mask_size: int = 28  # T
    xi: float = 0.4  # Eq.1's threshold (Eq.10's at test time is test.mask_threshold)
    fg_thresh: float = 0.5  # OICR: IoU with a seed to be foreground
    bg_thresh: float = 0.1  # OICR: below this IoU a proposal is ignored
    reg_iou: float = 0.6  # regression pairs: IoU with the seed above this
    # the seeds of the pseudo-labels (refinement, IMG, regressor): OICR's one per present class
    # ("oicr", the paper), several ("mist": the top `seed_top` of the proposals after NMS at `seed_nms`),
    # or one, the centre of the class's proposal cluster ("pcl": among the top `seed_top`, the one
    # overlapping most of them at IoU > `seed_graph_iou`; a candidate cure for parts winning over wholes)
    pseudo_seeds: str = "oicr"
    seed_top: float = 0.15
    seed_nms: float = 0.2
    seed_graph_iou: float = 0.4
    fg_nms: float = 0.3  # NMS among each class's foreground proposals (Sec. 3.2.1)
    fg_per_class: int = 4  # foreground proposals kept per class after NMS for IMG/seg
    bg_per_image: int = 4  # background proposals sampled per image for IMG/seg
    bg_iou: float = 0.3  # a background sample overlaps every foreground proposal below this
    fc_std: float = 0.01  # FC init N(0, fc_std^2)
    # Weights of the IMG (Eq.7) and segmentation (Eq.9) terms in Eq.2, where the paper has 1. Both
    # reach the shared trunk; at 1 they outweigh the detector's terms there (docs/ABLATIONS.md).
    img_loss_weight: float = 0.1
    seg_loss_weight: float = 0.1
    # Eq.9 over every channel of each proposal ("all", as printed) or only over the channel of its
    # pseudo class ("assigned": Sec. 3.2.3's class-specific mask, Mask R-CNN's rule). With "all" the
    # absent classes' channels learn min-max-normalised noise and the loss stays flat (docs/ABLATIONS.md).
    seg_channels: str = "assigned"
    # BoxInst's pairwise colour term on the foreground masks S (model/pairwise.py); 0 = off, as in the paper
    pairwise_weight: float = 0.0
    pairwise_tau: float = 0.3  # a neighbour pair counts when exp(-|lab_i - lab_j| / 2) >= this
    # each foreground proposal's Eq.1 mask replaced by the image's graph segment that overlaps it best
    # (model/snapping.py; the paper's segment post-processing, used on the pseudo masks in training;
    # not in the paper, measured in docs/ABLATIONS.md)
    snap_pseudo_masks: bool = True
    # ... and where that segment's IoU with the mask is below this, the finest segments it covers for
    # at least snap_superpixel_cover of their cells, as test.superpixel_iou does at test time; 0 = off
    snap_superpixel_iou: float = 0.0
    snap_superpixel_cover: float = 0.6
    # the snapping ranks the segments by IoU with the mask + snap_box_weight x IoU of the segment's
    # box (in the whole image) with the proposal's: a box prior against a ring's hole; 0 = off
    snap_box_weight: float = 0.0
    # Eq.5's 1/|R|: over all proposals ("all", as printed: a few paired of 100 leave the loss near 1e-3)
    # or over the paired ones ("paired"), as Fast R-CNN's box loss (docs/ABLATIONS.md)
    reg_norm: str = "paired"
    # Eq.5's target box for the proposals paired with a seed: the seed's box ("seed", the paper) or,
    # with snapping, the whole-image extent of the segment its pseudo mask snapped to ("segment"),
    # where that extent holds the seed's centre and is at most SEGMENT_GROWTH times its area
    reg_target: str = "seed"
    # ContextLocNet's contrastive score in MIDN: a box's detection logit minus the same layer's logit
    # on its frame (the box scaled by this factor about its centre, less the box). A part inside its
    # object (a ring's hole) has the object on its frame and loses to the whole. 0 = off (the paper);
    # not in the paper; 1.5 against 1.8 and 2.2 measured in docs/ABLATIONS.md
    context_frame: float = 1.5
    # the frame pass's precision (wsis.model.precision): "auto" = bfloat16 on a CPU with AVX512-BF16 or
    # AMX (twice as fast there), else the model's; "bfloat16"; "same" = the model's dtype
    frame_dtype: str = "auto"


@dataclass
class DataConfig:
    # a VOC-format tree, the image folder of COCO-format splits, or a YOLO root (its data.yaml names
    # the splits); "" generates the synthetic set. Caches (proposals, segments) are written under it.
    root: str = ""
    synthetic_dir: str = ""  # "" = data/synthetic-<digest of the synthetic settings>
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)  # the generator's knobs
    # a VOC list (ImageSets/Segmentation, else ImageSets/Main), a COCO annotation JSON (a .json path), a
    # YOLO split, or a tags-only labels file (a .csv, or a .json of image -> class names; wsis/data/tags.py)
    train_split: str = "train"
    val_split: str = "val"  # "" with evaluate=false: train without scoring
    # the classes a YOLO root's splits keep, or a tags file's classes: "" all its names, "voc" VOC's 20
    # (from COCO's names in a YOLO root), "a,b" those
    classes: str = ""
    # training images that hold none of the classes: kept as negatives (all-zero labels) or left out;
    # negatives cost CorLoc at the same iterations on the synthetic set (docs/RESULTS.md)
    negatives: bool = False
    scales: Tuple[int, ...] = (320, 384, 448)  # shorter sides for training (random) and testing (ensemble)
    max_size: int = 800
    flip: bool = True
    proposal_mode: str = "fast"  # Selective Search mode: fast, quality or single
    # Selective Search on the image resized by this (boxes mapped back). On the synthetic set 0.55 found
    # more objects in the first 100 boxes than 1 (the full size), in a quarter of the time
    # (docs/ABLATIONS.md); the VOC config keeps 1
    proposal_scale: float = 0.55
    min_box: float = 8.0
    max_boxes: int = 100  # proposals per image
    train_boxes: int = 0  # proposals per training image, drawn anew each time from its max_boxes; 0: all
    # loader processes; 0 loads in the training process: on 2 cores a loader process takes CPU time
    # from the two compute threads (docs/ABLATIONS.md: a few % per iteration, the same batches)
    workers: int = 0


@dataclass
class SolverConfig:
    batch_size: int = 2  # images per iteration over all processes
    optimizer: str = "adamw"  # "sgd" (the paper's, with momentum) or "adamw" (from scratch on the CPU)
    lr: float = 5e-4  # the CPU default's AdamW on the trained trunk (docs/ABLATIONS.md)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 1e-4
    max_iter: int = 1200
    steps: Tuple[int, ...] = (1000,)  # the lr is multiplied by gamma at each
    gamma: float = 0.1
    # linear warm-up from warmup_factor * lr. 300, not 50: after a 50-iteration warm-up MIDN's loss
    # peaked at iterations 60-80 and 2 of 8 runs of a seed x precision grid never recovered
    # (docs/RESULTS.md, robustness)
    warmup_iters: int = 300
    warmup_factor: float = 0.1
    clip_grad_norm: float = 0.0  # 0: no clipping
    # A warm start for the community: the IMG, segmentation and box-regression terms of Eq.2 stay out
    # of the loss (the model trains as its Detector only) until this iteration, then rise linearly to
    # their weights over as many iterations again. 0: all terms from the first iteration (the paper).
    # A candidate against runs where the community tips the detector over (docs/RESULTS.md).
    community_start: int = 0
    amp: bool = True  # bfloat16 autocast, on CUDA only
    checkpoint_period: int = 500
    log_period: int = 20
    eval_period: int = 0  # evaluate mAP^r@0.5 on data.val_split every this many iterations (0: only at the end)


@dataclass
class TestConfig:
    # () = every scale of data.scales (the paper's ensemble, with the flip). The CPU default tests
    # above its training scales: 512 gave +6.5 mAP^r@0.5 and +6.9 det mAP over 384 (docs/ABLATIONS.md)
    scales: Tuple[int, ...] = (512,)
    # the flipped view too (2 views): on the CPU default it added 2.3 points of mAP^r@0.5 with segments,
    # 2.4 of det mAP and 3.3 of CorLoc (docs/ABLATIONS.md) for twice the inference
    flip: bool = True
    score_thresh: float = 0.01
    nms: float = 0.3
    max_detections: int = 20
    # A detection's mask before the threshold: "mean" = Eq.10's (M + S) / 2 (the paper; the VOC
    # config), "seg" = the segmentation head's S alone, "img" = IMG's M alone; without the head
    # (model.seg=false) it is M. On the CPU default, S alone gave +6.5 mAP^r@0.5 over Eq.10 on six
    # seeds (docs/ABLATIONS.md): IMG's map is a blob over the box, which the mean carries into the mask
    masks: str = "seg"
    # The mask is the map above this: Eq.10 thresholds at model.xi (the VOC config sets both 0.4);
    # S alone is a probability: 0.5, chosen on a held-out set, gave +11.7 mAP^r@0.5 over 0.4 on the
    # CPU default's val set (six seeds) and -1.2 with segments (docs/ABLATIONS.md)
    mask_threshold: float = 0.5
    # CorLoc's split at the end of training: "" = the scored split (data.val_split); the paper's
    # VOC setting locates on its training images (configs/voc2012_r50.yaml sets it).
    corloc_split: str = ""
    # Masks snapped to segments (none | segments | mcg:DIR), scored beside the model's own masks at the
    # end of training and by python -m wsis.evaluate; the headline figures stay the model's own.
    postprocess: str = "segments"
    # After segments replace the masks, a detection whose new mask overlaps a higher-scoring one of
    # its class above this IoU is dropped (PRM's NMS after retrieval; docs/ABLATIONS.md); 1 keeps all.
    postprocess_nms: float = 0.5
    # With `segments`: a mask whose best segment matches it below this IoU (an object that clutter cut
    # into pieces) takes instead the finest graph regions it covers for at least
    # `superpixel_cover` of their area; 0 = best segment only (docs/ABLATIONS.md)
    superpixel_iou: float = 0.4
    superpixel_cover: float = 0.6
    # With `segments`: the segment a mask takes is the one of highest IoU with it + this x the IoU of
    # the segment's box with the detection's (a box prior: the hole of a ring overlaps a central mask
    # best, the ring fits the box); 0 = the paper's best overlap (docs/ABLATIONS.md)
    segment_box_weight: float = 0.5


MASK_SOURCES = ("mean", "seg", "img")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output_dir: str = ""  # "" = runs/<date-time>
    device: str = "auto"  # auto, cpu, cuda
    seed: int = 0
    # torch.use_deterministic_algorithms for the run, our kernels included: on CUDA, bit-identical
    # reruns at some cost in speed (CPU runs on one machine and thread count repeat without it).
    deterministic: bool = False
    evaluate: bool = True  # evaluate on data.val_split at the end of training

    def check(self) -> "Config":
        m = self.model
        if m.seg and not m.img:
            raise ValueError("model.seg=true needs model.img=true: the segmentation head learns from the IMG masks")
        if m.regressor not in ("agnostic", "specific", "none"):
            raise ValueError(f"model.regressor must be agnostic, specific or none, got {m.regressor!r}")
        check_backbone_name(m.backbone.name)
        check_freeze_at(m.backbone.freeze_at)
        if m.seg_channels not in ("all", "assigned"):
            raise ValueError(f"model.seg_channels must be all or assigned, got {m.seg_channels!r}")
        if m.pseudo_seeds not in ("oicr", "mist", "pcl") or not 0 < m.seed_top <= 1:
            raise ValueError(f"model.pseudo_seeds must be oicr, mist or pcl and model.seed_top in (0, 1], got "
                             f"{m.pseudo_seeds!r} and {m.seed_top}")  # fmt: skip
        if not 0 <= m.seed_graph_iou < 1:
            raise ValueError(f"model.seed_graph_iou must be in [0, 1), got {m.seed_graph_iou}")
        if m.reg_target not in ("seed", "segment") or (m.reg_target == "segment" and not (m.snap_pseudo_masks and m.img)):
            raise ValueError(f"model.reg_target must be seed or segment (segment needs model.snap_pseudo_masks=true "
                             f"and model.img=true), got {m.reg_target!r}")  # fmt: skip
        if m.snap_box_weight < 0:
            raise ValueError(f"model.snap_box_weight must be >= 0, got {m.snap_box_weight}")
        if not 0 <= m.snap_superpixel_iou <= 1 or not 0 < m.snap_superpixel_cover <= 1:
            raise ValueError(f"model.snap_superpixel_iou must be in [0, 1] and model.snap_superpixel_cover in (0, 1], "
                             f"got {m.snap_superpixel_iou} and {m.snap_superpixel_cover}")  # fmt: skip
        if m.reg_norm not in ("all", "paired"):
            raise ValueError(f"model.reg_norm must be all or paired, got {m.reg_norm!r}")
        if m.frame_dtype not in FRAME_DTYPES:
            raise ValueError(f"model.frame_dtype must be one of {FRAME_DTYPES}, got {m.frame_dtype!r}")
        if m.context_frame != 0 and not m.context_frame > 1:
            raise ValueError(f"model.context_frame must be 0 (off) or > 1, got {m.context_frame}")
        if m.pairwise_weight < 0 or not 0 < m.pairwise_tau <= 1:
            raise ValueError(f"model.pairwise_weight must be >= 0 and model.pairwise_tau in (0, 1], got "
                             f"{m.pairwise_weight} and {m.pairwise_tau}")  # fmt: skip
        if m.head_pool < (3 if m.context_frame else 1):  # the frame is the ring of cells round the box
            raise ValueError(f"model.head_pool must be >= 3 with model.context_frame (a frame needs a ring of "
                             f"cells) and >= 1 without, got {m.head_pool}")  # fmt: skip
        if m.res5_stride not in (1, 2):
            raise ValueError(f"model.res5_stride must be 1 or 2, got {m.res5_stride}")
        if m.backbone.head_skip < 0:  # the upper bound is the backbone's count, checked where it is built
            raise ValueError(f"model.backbone.head_skip must be >= 0, got {m.backbone.head_skip}")
        if m.refine_branches < 1:
            raise ValueError("model.refine_branches must be at least 1")
        if self.solver.batch_size < 1 or self.solver.max_iter < 1:
            raise ValueError("solver.batch_size and solver.max_iter must be positive")
        if not 0 <= 2 * self.solver.community_start <= self.solver.max_iter:
            raise ValueError(f"solver.community_start must be in [0, solver.max_iter / 2] (the terms rise over as many "
                             f"iterations again), got {self.solver.community_start}")  # fmt: skip
        if self.solver.eval_period < 0:
            raise ValueError(f"solver.eval_period must be >= 0, got {self.solver.eval_period}")
        from .data.proposals import MODES, check_scale  # here: the data package imports this module

        if self.data.proposal_mode not in MODES:
            raise ValueError(f"data.proposal_mode must be one of {MODES}, got {self.data.proposal_mode!r}")
        check_scale(self.data.proposal_scale)
        if self.data.train_boxes < 0:
            raise ValueError(f"data.train_boxes must be >= 0 (0: every proposal), got {self.data.train_boxes}")
        if self.data.classes and not self.data.root:
            raise ValueError(f"data.classes={self.data.classes!r} selects the classes of a YOLO-format root or names "
                             "those of a tags file: set data.root to one")  # fmt: skip
        if not self.data.scales:
            raise ValueError("data.scales must name at least one scale")
        files = [k for k in ("train_split", "val_split") if str(getattr(self.data, k)).lower().endswith((".json", ".csv"))]
        if files and not self.data.root:
            raise ValueError(f"data.{files[0]} is a COCO annotation or labels file: set data.root to the folder of its "
                             "images")  # fmt: skip
        if self.solver.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"solver.optimizer must be sgd or adamw, got {self.solver.optimizer!r}")
        if not 0 <= self.test.mask_threshold < 1:
            raise ValueError(f"test.mask_threshold must be in [0, 1), got {self.test.mask_threshold}")
        if self.test.masks not in MASK_SOURCES:
            raise ValueError(f"test.masks must be one of {MASK_SOURCES}, got {self.test.masks!r}")
        if not 0 < self.test.postprocess_nms <= 1:
            raise ValueError(f"test.postprocess_nms must be in (0, 1], got {self.test.postprocess_nms}")
        if self.test.segment_box_weight < 0:
            raise ValueError(f"test.segment_box_weight must be >= 0, got {self.test.segment_box_weight}")
        if not 0 <= self.test.superpixel_iou <= 1 or not 0 < self.test.superpixel_cover <= 1:
            raise ValueError(f"test.superpixel_iou must be in [0, 1] and test.superpixel_cover in (0, 1], got "
                             f"{self.test.superpixel_iou} and {self.test.superpixel_cover}")  # fmt: skip
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self


def keys(cfg: Any, prefix: str = "") -> List[str]:
    """Every dotted key of a config, e.g. `solver.lr`."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out += keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return out


def _convert(value: Any, like: Any, key: str) -> Any:
    try:
        if isinstance(like, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
            return value
        if isinstance(like, tuple):
            items = value if isinstance(value, (list, tuple)) else [value]
            return tuple(type(like[0])(v) if like else v for v in items) if like else tuple(items)
        if isinstance(like, int):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if isinstance(like, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"config key {key}: cannot use {value!r} as a {type(like).__name__}") from None


def _set(cfg: Any, dotted: str, value: Any) -> None:
    node, parts = cfg, dotted.split(".")
    for i, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(node)}
        if part not in names:
            raise KeyError(f"unknown config key {dotted!r}; valid keys are: {', '.join(keys(cfg))}")
        if i == len(parts) - 1:
            current = getattr(node, part)
            if dataclasses.is_dataclass(current):
                raise KeyError(f"config key {dotted!r} is a section; set one of its keys, e.g. {keys(current, dotted + '.')[0]}")
            setattr(node, part, _convert(value, current, dotted))
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise KeyError(f"unknown config key {dotted!r}; valid keys are: {', '.join(keys(cfg))}")


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + str(k): v})
    return out


# Keys of the ResNetGN backbone that timm backbones replaced: a file that has them is from before.
_LEGACY_KEYS = ("model.backbone.depth", "model.backbone.width")


def merge(cfg: Config, tree: Dict[str, Any]) -> Config:
    flat = _flatten(tree)
    legacy = [k for k in _LEGACY_KEYS if k in flat]
    if legacy:
        raise ValueError(f"{', '.join(legacy)}: this config or checkpoint is of the old ResNetGN backbone layout, "
                         "which wsis no longer builds; backbones now come from timm (model.backbone.name, e.g. "
                         "resnet50_gn). Retrain with a current config.")  # fmt: skip
    for dotted, value in flat.items():
        _set(cfg, dotted, value)
    return cfg


# Keys added with a default other than what wsis did before them: the value that a saved config (a
# checkpoint's, a run folder's config.yaml) from before the key meant, so that its model still fits.
PREDATING = {"model.seg_res3": False}


def from_saved(tree: Dict[str, Any]) -> Config:
    """The config of a saved tree (a checkpoint's or a run folder's): the keys it names, the PREDATING
    value of a key it predates, today's default for the rest."""
    cfg = merge(Config(), tree)
    named = _flatten(tree)
    for key, value in PREDATING.items():
        if key not in named:
            _set(cfg, key, value)
    return cfg


def unnamed_keys(tree: Dict[str, Any]) -> List[str]:
    """The dotted keys of today's config that a saved config tree (a checkpoint's) does not name,
    PREDATING's aside: they take today's defaults, which may differ from those it was made with."""
    named = _flatten(tree)
    return [k for k in keys(Config()) if k not in named and k not in PREDATING]


def load(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = (), saved: bool = False) -> Config:
    """Defaults, then the YAML file at `path`, then `key=value` overrides; checked. `saved`: the
    file is a run folder's own config.yaml (`from_saved`)."""
    cfg = Config()
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ValueError(f"config file {path} must hold a mapping of keys, not {type(tree).__name__}")
        cfg = from_saved(tree) if saved else merge(cfg, tree)
    return apply_overrides(cfg, overrides).check()


def override_key(item: str) -> str:
    """The dotted key that a `key=value` override sets, as `apply_overrides` reads it."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must be key=value, e.g. solver.lr=0.01")
    return item.split("=", 1)[0].strip()


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """`key=value` items, each value read as YAML (`solver.steps=[100,200]`, `model.img=false`)."""
    for item in overrides:
        key, text = override_key(item), item.split("=", 1)[1]
        _set(cfg, key, yaml.safe_load(text) if text.strip() else "")
    return cfg


def _plain(tree: Dict[str, Any]) -> Dict[str, Any]:
    return {k: _plain(v) if isinstance(v, dict) else (list(v) if isinstance(v, tuple) else v) for k, v in tree.items()}


def to_dict(cfg: Config) -> Dict[str, Any]:
    return _plain(dataclasses.asdict(cfg))


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

