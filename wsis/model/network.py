"""The community network (Sec. 3, docs/DESIGN.md §1): backbone, detector, IMG and segmentation, and Eq.2."""
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..config import ModelConfig
from ..data.loader import IMAGENET_MEAN, IMAGENET_STD
from . import losses, pairwise, snapping
from .backbone import Backbone
from .heads import DetectionHead, MaskGenerator, SegmentationHead, mean_refinement_scores, midn_scores
from .precision import frame_in_bf16


# model.reg_target=segment: the largest growth (in area) from a seed's box to its segment's extent
# that Eq.5 takes as a target. A ring's inner hole, the part the detector tends to pick, is about a
# quarter of the ring's box; a segment that leaks into the background grows much more.
SEGMENT_GROWTH = 5.0

# the loader's normalisation, undone for the colours of the pairwise term
_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def frame_mask(size: int, scale: float) -> torch.Tensor:
    """[size, size]: 0 on the cells of a box scaled by `scale` whose centres lie inside the box, 1 elsewhere."""
    u = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # cell centres, the outer box as [-1, 1]
    inside = u.abs() < 1 / scale
    return 1 - (inside[:, None] & inside[None, :]).float()


@dataclass
class Selection:
    """The proposals of a batch that feed IMG and the segmentation head (Sec. 3.2.1)."""

    index: torch.Tensor  # int64 [S], rows of the batch's rois
    classes: torch.Tensor  # int64 [S], 1-based class, 0 for background


def pseudo_labels(boxes: torch.Tensor, scores: torch.Tensor, y: torch.Tensor, cfg: ModelConfig):
    """A refinement branch's targets for one image (labels, weights, seed row, IoU with it) from the
    previous branch's `scores [R, C]` and the image labels `y [C]`, by `cfg.pseudo_seeds`' rule. A
    negative image (no class present: `data.negatives`) has no seed: every proposal is background
    with full weight, as its label is certain, and none is paired for the regressor."""
    if not bool((y == 1).any()):
        rows = torch.arange(len(boxes), device=boxes.device)
        return torch.zeros_like(rows), scores.new_ones(len(boxes)), rows, boxes.new_zeros(len(boxes))
    if cfg.pseudo_seeds == "mist":
        return ops.multi_seed_assign(boxes, scores, y, cfg.fg_thresh, cfg.bg_thresh, cfg.seed_top, cfg.seed_nms)
    if cfg.pseudo_seeds == "pcl":
        return ops.cluster_seed_assign(boxes, scores, y, cfg.fg_thresh, cfg.bg_thresh, cfg.seed_top,
                                       cfg.seed_graph_iou)  # fmt: skip
    return ops.oicr_assign(boxes, scores, y, cfg.fg_thresh, cfg.bg_thresh)


class CommunityNet(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int):
        super().__init__()
        self.cfg, self.num_classes = cfg, num_classes
        b = cfg.backbone
        self.backbone = Backbone(b.name, b.weights, b.freeze_at, cfg.res5_stride, b.freeze_head, b.head_skip)
        ch = self.backbone.channels
        self.detector = DetectionHead(ch["res5"], num_classes, cfg.refine_branches, cfg.regressor, cfg.regressor_dim,
                                      cfg.fc_std)  # fmt: skip
        # With the background channel the CAM/segmentation channels are 0 = background, c = class c.
        self.mask_channels = num_classes + 1 if cfg.img_background else num_classes
        self.img = self.seg = None
        if cfg.img:
            self.img = MaskGenerator([ch["res3"], ch["res4"], ch["res5"]], cfg.img_dim, self.mask_channels,
                                     cfg.img_weighted_gap, cfg.img_log_smoothing, cfg.gap_sigma, cfg.fc_std,
                                     cfg.mask_size)  # fmt: skip
        if cfg.seg:
            self.seg = SegmentationHead(ch["res5"], cfg.seg_dim, self.mask_channels, cfg.fc_std, cfg.mask_size,
                                        ch["res3"] if cfg.seg_res3 else 0)
        self.memory_format = torch.contiguous_format

    def to_device(self, device: torch.device) -> "CommunityNet":
        """The model on `device`. On the CPU its weights, and the images it is given, are channels_last
        (NHWC): oneDNN's convolutions run faster that way (benchmarks/test_bench_model.py times both)."""
        self.memory_format = torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
        return self.to(device=device, memory_format=self.memory_format)

    # ---- shared pieces -------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.backbone.trunk(images.contiguous(memory_format=self.memory_format))

    def _res5(self, res4: torch.Tensor, rois: torch.Tensor, cells: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The head on the `model.head_pool`-square roi_pool of res4, each pooled grid multiplied by `cells` if given."""
        pooled = ops.roi_pool(res4.float(), rois, self.cfg.head_pool, 1.0 / self.backbone.strides["res4"])
        if cells is not None:
            pooled = pooled * cells.to(pooled.device)
        return self.backbone.res5(pooled.to(res4.dtype))

    @torch.no_grad()
    def _frame_features(self, res4: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """The head's features of each roi's frame, [K, D] (ContextLocNet): the box scaled by
        `context_frame` about its centre, pooled like the box, with the cells whose centres lie in the box
        zeroed. Without gradient: a forward pass of the head only, and MIDN's det layer still learns
        from both terms. In bfloat16 where `model.frame_dtype` says so (wsis.model.precision)."""
        s = self.cfg.context_frame
        centre, half = (rois[:, 1:3] + rois[:, 3:]) / 2, (rois[:, 3:] - rois[:, 1:3]) / 2 * s
        outer = torch.cat([rois[:, :1], centre - half, centre + half], 1)
        # autocast(enabled=False) would also switch off an enclosing AMP region, so "same" enters none
        bf16 = frame_in_bf16(self.cfg.frame_dtype, res4.device)
        with torch.autocast(res4.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            frame = self._res5(res4, outer, frame_mask(self.cfg.head_pool, s)).mean((2, 3))
        return frame.to(res4.dtype)

    def _levels(self, res3, res4, f5: torch.Tensor, rois: torch.Tensor,
                l3: Optional[torch.Tensor] = None) -> List[torch.Tensor]:  # fmt: skip
        """The three IMG inputs: res3 and res4 pooled to 28x28 (`l3`: res3 already pooled for these
        rois), and res5 of each roi (IMG upsamples it)."""
        return [self._pooled(res3, rois, "res3") if l3 is None else l3, self._pooled(res4, rois, "res4"), f5]

    def _pooled(self, x: torch.Tensor, rois: torch.Tensor, level: str) -> torch.Tensor:
        """The feature map `x` of `level` roi-pooled to T x T per roi."""
        t = self.cfg.mask_size
        return ops.roi_pool(x.float(), rois, t, 1.0 / self.backbone.strides[level]).to(x.dtype)

    def _channel(self, classes: torch.Tensor) -> torch.Tensor:
        return classes if self.cfg.img_background else classes - 1

    # ---- training ------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, rois: torch.Tensor, counts: List[int], labels: torch.Tensor,
                generator: Optional[torch.Generator] = None, segments: Optional[Sequence[torch.Tensor]] = None,
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:  # fmt: skip
        """Eq.2 on a batch: (losses by name, intermediate outputs for inspection).

        `rois [K,5]` hold the proposals of each image in turn (`counts[i]` of image i), `labels
        [B,C]` the image-level labels; `generator` draws the background samples of IMG/seg;
        `segments[i]` the graph segment ids `[G, H, W]` of image i, for `snap_pseudo_masks`.
        """
        cfg = self.cfg
        res3, res4 = self.features(images)
        f5 = self._res5(res4, rois)
        frame = self._frame_features(res4, rois) if cfg.context_frame > 0 else None
        cls_logits, det_logits, refine_logits, offsets = self.detector(f5.mean((2, 3)), frame)
        zero = images.new_zeros((), dtype=torch.float32)
        loss = {"cls": zero, "refine": zero}
        if offsets is not None:
            loss["reg"] = zero
        picked, picked_cls, pairs = [], [], []
        start = 0
        for b, n in enumerate(counts):
            rows = slice(start, start + n)
            boxes, y = rois[rows, 1:], labels[b]
            z = midn_scores(cls_logits[rows], det_logits[rows])
            loss["cls"] = loss["cls"] + losses.midn_loss(z.sum(0), y)
            prev = z.detach()  # each branch learns from the one before it (Eq.4), the first from MIDN
            for logits in refine_logits:
                lab, w, _, _ = pseudo_labels(boxes, prev, y, cfg)
                loss["refine"] = loss["refine"] + losses.refine_loss(logits[rows], lab, w)
                prev = F.softmax(logits[rows].detach().float(), 1)[:, 1:]
            # the pseudo-labels of IMG and the regressor (Sec. 3.3.2)
            mean = mean_refinement_scores([logits[rows].detach() for logits in refine_logits])
            lab, _, seed, max_iou = pseudo_labels(boxes, mean[:, 1:].contiguous(), y, cfg)
            if offsets is not None:
                pairs.append((rows, lab, seed + start, max_iou > cfg.reg_iou))
            if self.img is not None:
                idx, cls = self.select(boxes, mean, lab, y, generator)
                picked.append(idx + start)
                picked_cls.append(cls)
            start += n
        out = {"cls_logits": cls_logits, "det_logits": det_logits, "refine_logits": refine_logits, "offsets": offsets}
        mask_losses = {}
        if self.img is not None:
            sel = Selection(torch.cat(picked), torch.cat(picked_cls))
            mask_losses = self._mask_losses(images, res3, res4, f5, rois, sel, out, segments)
            out["selection"] = sel
        targets = self._regression_targets(rois[:, 1:], out)
        for rows, lab, seed, paired in pairs:  # Eq.5, per image
            target = losses.encode(rois[rows, 1:], targets[seed])
            offs = self._class_offsets(offsets[rows], lab)
            loss["reg"] = loss["reg"] + losses.regression_loss(offs, target, paired, cfg.reg_norm)
        loss = {k: v / len(counts) for k, v in loss.items()}
        loss.update(mask_losses)
        return loss, out

    def _regression_targets(self, boxes: torch.Tensor, out) -> torch.Tensor:
        """The target box of each roi as a seed: its own box, or its snapped segment's extent
        (`model.reg_target=segment`) where that holds the box's centre and grows it at most SEGMENT_GROWTH times."""
        if self.cfg.reg_target != "segment" or "segment_boxes" not in out:
            return boxes
        targets = boxes.clone()
        rows, grown = out["segment_rows"], out["segment_boxes"]
        own = boxes[rows]
        cx, cy = (own[:, 0] + own[:, 2]) / 2, (own[:, 1] + own[:, 3]) / 2
        ok = ((grown[:, 0] <= cx) & (cx <= grown[:, 2]) & (grown[:, 1] <= cy) & (cy <= grown[:, 3])
              & (_area(grown) <= SEGMENT_GROWTH * _area(own)))  # NaN (no segment) compares false  # fmt: skip
        targets[rows[ok]] = grown[ok].to(targets.dtype)
        return targets

    def _class_offsets(self, offsets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The offsets of each proposal's pseudo class (class-specific regressor) or the only ones."""
        if offsets.shape[1] == 4:
            return offsets
        cls = (labels - 1).clamp(min=0)  # unpaired proposals (background) are not in the loss
        return offsets.reshape(len(offsets), -1, 4)[torch.arange(len(offsets), device=offsets.device), cls]

    def select(self, boxes, mean, labels, y, generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per positive class its foreground proposals after NMS, plus sampled background ones."""
        cfg = self.cfg
        fg = [torch.zeros(0, dtype=torch.int64, device=boxes.device)]  # a negative image has none
        fg_cls = [fg[0]]
        for c in torch.nonzero(y > 0).flatten().tolist():
            cand = torch.nonzero(labels == c + 1).flatten()
            keep = ops.nms(boxes[cand], mean[cand, c + 1].contiguous(), cfg.fg_nms)[: cfg.fg_per_class]
            fg.append(cand[keep])
            fg_cls.append(torch.full((len(keep),), c + 1, dtype=torch.int64, device=boxes.device))
        fg, fg_cls = torch.cat(fg), torch.cat(fg_cls)
        if not cfg.img_background or cfg.bg_per_image == 0:
            return fg, fg_cls
        far = labels == 0
        if len(fg):
            far &= ops.box_iou(boxes, boxes[fg]).amax(1) < cfg.bg_iou
        cand = torch.nonzero(far).flatten()
        order = torch.randperm(len(cand), generator=generator, device="cpu").to(cand.device)
        bg = cand[order[: cfg.bg_per_image]]
        return torch.cat([fg, bg]), torch.cat([fg_cls, torch.zeros_like(bg)])

    def _mask_losses(self, images, res3, res4, f5, rois, sel: Selection, out, segments) -> Dict[str, torch.Tensor]:
        """Eq.7-8 (IMG vs the detector's pseudo-labels), Eq.9 (segmentation vs the Eq.1 masks) and,
        when weighted, the pairwise colour term on the foreground proposals' masks."""
        cfg = self.cfg
        levels = self._levels(res3, res4, f5[sel.index], rois[sel.index])
        cams, logits = self.img(levels)
        channel = self._channel(sel.classes)
        onehot = F.one_hot(channel, self.mask_channels).to(logits.dtype)
        result = {"img": cfg.img_loss_weight * sum(losses.cam_loss(level, onehot) for level in logits)}
        out.update(cams=cams, cam_logits=logits)
        if self.seg is not None:
            _, masks = ops.cam_pseudo_masks(cams.detach(), cfg.xi)  # no gradient through pseudo-labels
            seg_logits = self.seg(f5[sel.index], levels[0] if cfg.seg_res3 else None)
            rows = torch.arange(len(channel), device=channel.device)
            own = seg_logits[rows, channel]  # [S, T, T]: each proposal's class-specific mask
            fg = sel.classes > 0
            if cfg.snap_pseudo_masks:
                if segments is None or len(segments) != len(images) or any(x is None for x in segments):
                    raise ValueError("model.snap_pseudo_masks needs the graph segments of every image of the batch "
                                     "(TrainDataset(..., segments=True) loads them)")  # fmt: skip
                masks = masks.clone()
                masks[rows[fg], channel[fg]], boxes = snapping.snap_masks(
                    segments, rois[sel.index][fg], masks[rows[fg], channel[fg]], cfg.reg_target == "segment",
                    cfg.snap_superpixel_iou, cfg.snap_superpixel_cover, cfg.snap_box_weight)
                if boxes is not None:
                    out.update(segment_rows=sel.index[fg], segment_boxes=boxes)
            if cfg.seg_channels == "assigned":
                result["seg"] = cfg.seg_loss_weight * losses.seg_loss(own[:, None], masks[rows, channel][:, None])
            else:
                result["seg"] = cfg.seg_loss_weight * losses.seg_loss(seg_logits, masks)
            if cfg.pairwise_weight > 0:
                rgb = images.float() * _STD.to(images.device) + _MEAN.to(images.device)
                lab = pairwise.rgb_to_lab(rgb)
                colours = pairwise.roi_colours(lab, rois[sel.index][fg].float(), cfg.mask_size)
                result["pairwise"] = cfg.pairwise_weight * pairwise.pairwise_loss(own[fg], colours, cfg.pairwise_tau)
            out.update(seg_logits=seg_logits, pseudo_masks=masks)
        return result

    # ---- inference (Sec. 3.4) ------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, res4: torch.Tensor, rois: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(mean refinement scores [K, C] without background, regressed boxes [K, 4] or [K, C, 4])."""
        _, _, refine_logits, offsets = self.detector(self._res5(res4, rois).mean((2, 3)))
        scores = mean_refinement_scores(refine_logits)[:, 1:]
        boxes = rois[:, 1:]
        if offsets is None:
            return scores, boxes
        offsets = offsets.float()
        if offsets.shape[1] != 4:
            offsets = offsets.reshape(len(offsets), -1, 4)
        return scores, losses.decode(boxes, offsets)

    @torch.no_grad()
    def mask_maps(self, res3, res4, rois: torch.Tensor, classes: torch.Tensor,
                  source: str = "mean") -> Optional[torch.Tensor]:  # fmt: skip
        """A detection's mask before the threshold, [D, T, T]: Eq.10's `(M^c + S^c) / 2` (`source`
        "mean"), `S^c` ("seg") or `M^c` ("img"; also without the head); None without IMG."""
        if self.img is None or len(rois) == 0:
            return None if self.img is None else rois.new_zeros((0, self.cfg.mask_size, self.cfg.mask_size))
        f5 = self._res5(res4, rois)
        rows, ch = torch.arange(len(rois), device=rois.device), self._channel(classes)
        s = l3 = None
        if self.seg is not None and source != "img":
            l3 = self._pooled(res3, rois, "res3") if self.cfg.seg_res3 else None
            s = torch.sigmoid(self.seg(f5, l3))[rows, ch]
        if s is not None and source == "seg":
            return s
        cams, _ = self.img(self._levels(res3, res4, f5, rois, l3))  # res3 pooled once when the head read it
        mean, _ = ops.cam_pseudo_masks(cams, self.cfg.xi)
        m = mean[rows, ch]
        return m if s is None else (m + s) / 2
