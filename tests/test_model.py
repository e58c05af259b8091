"""The network: its losses against a hand computation of Eq.3-9, ablation switches, weights loading."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import needs_timm
from wsis import config as config_lib
from wsis.model import CommunityNet, precision
from wsis.model.heads import conv3x3_upsampled
from wsis.model.losses import decode, encode
from wsis.model.network import frame_mask
import wsis.ops as W
from wsis.ops import reference as ref

needs_timm()

C = 3
ITERS = 150


def tiny(*overrides, classes=C, seed=0):
    """A small network; without snapping unless asked (it needs each image's segments: `blocks`)."""
    cfg = config_lib.load(None, ["model.backbone.weights=none", "model.img_dim=8", "model.seg_dim=8",
                                 "model.regressor_dim=8", "model.fc_std=0.05", "model.snap_pseudo_masks=false",
                                 *overrides])  # fmt: skip
    torch.manual_seed(seed)
    return CommunityNet(cfg.model, classes), cfg.model


def blocks(images):
    """Segment ids of each image at two granularities: 16-pixel squares and 8-pixel columns."""
    _, _, h, w = images.shape
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    squares = (y // 16) * 100 + x // 16
    columns = 10_000 + x // 8
    return [torch.stack([squares, columns]).int() for _ in range(len(images))]


def batch(seed=0, n=(7, 5)):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 64, 80, generator=g)
    rois = []
    for b, k in enumerate(n):
        xy = torch.rand(k, 2, generator=g) * 40
        wh = torch.rand(k, 2, generator=g) * 30 + 8
        rois.append(torch.cat([torch.full((k, 1), float(b)), xy, xy + wh], 1))
    rois = torch.cat(rois)
    rois[2, 1:] = rois[1, 1:] + torch.tensor([1.0, 1.0, 2.0, 1.0])  # a near-duplicate: a regression pair
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    return images, rois, list(n), labels


def by_hand(model, cfg, rois, counts, labels, out):
    """Eq.3-9 written out with plain loops over the model's raw outputs."""
    total = {"cls": 0.0, "refine": 0.0, "reg": 0.0}
    if cfg.pseudo_seeds == "mist":  # the ops themselves are checked against loops in test_oicr_assign.py
        def assign(b, s, y):
            return W.multi_seed_assign(b, s, y, cfg.fg_thresh, cfg.bg_thresh, cfg.seed_top, cfg.seed_nms)
    elif cfg.pseudo_seeds == "pcl":
        def assign(b, s, y):
            return W.cluster_seed_assign(b, s, y, cfg.fg_thresh, cfg.bg_thresh, cfg.seed_top, cfg.seed_graph_iou)
    else:
        assign = ref.oicr_assign
    start = 0
    for b, n in enumerate(counts):
        rows = range(start, start + n)
        boxes = rois[start : start + n, 1:]
        xc, xd = out["cls_logits"][start : start + n], out["det_logits"][start : start + n]
        z = torch.zeros(n, C)
        for r in range(n):
            for c in range(C):  # Eq.11-13
                sc = math.exp(xc[r, c]) / sum(math.exp(xc[r, k]) for k in range(C))
                sd = math.exp(xd[r, c]) / sum(math.exp(xd[j, c]) for j in range(n))
                z[r, c] = sc * sd
        phi = z.sum(0)
        total["cls"] += -sum(
            labels[b, c] * math.log(phi[c]) + (1 - labels[b, c]) * math.log(1 - phi[c]) for c in range(C)
        )  # Eq.3
        prev, probs = z, []
        for logits in out["refine_logits"]:
            lab, w, _, _ = assign(boxes, prev, labels[b])
            x = torch.softmax(logits[start : start + n], 1)
            total["refine"] += -sum(w[i] * math.log(x[i, lab[i]]) for i in range(n)) / n  # Eq.4
            probs.append(x)
            prev = x[:, 1:]
        mean = torch.stack(probs).mean(0)
        _, _, seed, iou = assign(boxes, mean[:, 1:].contiguous(), labels[b])
        reg, paired = 0.0, 0
        for i in range(n):
            if iou[i] > cfg.reg_iou:  # Eq.5 with the R-CNN offsets of Eq.14
                paired += 1
                p, g = boxes[i].tolist(), boxes[seed[i]].tolist()
                pw, ph, gw, gh = p[2] - p[0], p[3] - p[1], g[2] - g[0], g[3] - g[1]
                t = [(g[0] + gw / 2 - p[0] - pw / 2) / pw, (g[1] + gh / 2 - p[1] - ph / 2) / ph,
                     math.log(gw / pw), math.log(gh / ph)]  # fmt: skip
                for k in range(4):
                    d = abs(t[k] - float(out["offsets"][list(rows)[i], k]))
                    reg += 0.5 * d * d if d < 1 else d - 0.5
        total["reg"] += reg / (n if cfg.reg_norm == "all" else max(paired, 1))
        start += n
    total = {k: v / len(counts) for k, v in total.items()}
    sel = out["selection"]
    s = len(sel.index)
    img = 0.0
    for level in out["cam_logits"]:  # Eq.7-8
        p = torch.softmax(level, 1)
        for r in range(s):
            for c in range(C + 1):
                y = 1.0 if c == sel.classes[r] else 0.0
                img += -(y * math.log(p[r, c]) + (1 - y) * math.log(1 - p[r, c])) / s
    total["img"] = cfg.img_loss_weight * img  # Eq.2 with the config's weights
    _, masks = ref.cam_pseudo_masks(out["cams"].detach(), cfg.xi)  # Eq.1
    if cfg.snap_pseudo_masks:  # the foreground masks snapped to segments (tested in test_snapping.py)
        fg = sel.classes > 0
        assert torch.equal(out["pseudo_masks"][~fg], masks[~fg])
        masks = out["pseudo_masks"]
    sl = out["seg_logits"]
    q = torch.sigmoid(sl.double())
    m = masks.double()
    t2 = sl.shape[-1] * sl.shape[-2]
    if cfg.seg_channels == "assigned":  # only the channel of each proposal's pseudo class
        rows = torch.arange(s)
        q, m = q[rows, sel.classes][:, None], m[rows, sel.classes][:, None]
    total["seg"] = cfg.seg_loss_weight * float(-(m * q.log() + (1 - m) * (1 - q).log()).sum() / t2 / s)  # Eq.9
    return total


@pytest.mark.parametrize("options", [("model.seg_channels=all", "model.reg_norm=all", "model.snap_pseudo_masks=false",
                                      "model.context_frame=0"),  # as printed
                                     ("model.snap_pseudo_masks=true",),  # the CPU default
                                     ("model.snap_pseudo_masks=true", "model.snap_superpixel_iou=1.0"),  # superpixels wherever they cover
                                     ("model.pseudo_seeds=mist", "model.seed_top=0.5"),  # several seeds per class
                                     ("model.pseudo_seeds=pcl", "model.seed_top=0.5"),  # a cluster centre per class
                                     ("model.seg_res3=true",)])  # the head also reads res3
def test_losses_match_a_hand_computation_of_eq3_to_eq9(options):
    model, cfg = tiny("model.img_loss_weight=0.3", "model.seg_loss_weight=2.0", *options)  # unequal: a swap would show
    images, rois, counts, labels = batch()
    loss, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0), blocks(images))
    plain = {k: [x.detach() for x in v] if isinstance(v, list) else (v.detach() if torch.is_tensor(v) else v)
             for k, v in out.items()}  # fmt: skip
    expected = by_hand(model, cfg, rois, counts, labels, plain)
    assert set(loss) == {"cls", "refine", "reg", "img", "seg"}
    for k, v in expected.items():
        assert loss[k].item() == pytest.approx(float(v), rel=1e-4, abs=1e-6), k
    assert loss["reg"].item() > 0  # the near-duplicate pair was regressed
    # the class scores of IMG are the weighted GAP of its CAMs
    l, s, k, t, _ = out["cams"].shape
    torch.testing.assert_close(out["cam_logits"], ref.weighted_gap(out["cams"].reshape(l * s, k, t, t), cfg.gap_sigma).reshape(l, s, k))


def test_selection_takes_foreground_of_each_label_and_far_background():
    model, cfg = tiny("model.bg_per_image=2")
    images, rois, counts, labels = batch(1, n=(30, 30))
    _, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0))
    sel = out["selection"]
    image_of = rois[sel.index, 0].long()
    for b in range(2):
        fg = set(sel.classes[(image_of == b) & (sel.classes > 0)].tolist())
        assert fg == {c + 1 for c in torch.nonzero(labels[b]).flatten().tolist()}
        assert ((image_of == b) & (sel.classes == 0)).sum() <= 2
    for i in torch.nonzero(sel.classes == 0).flatten():
        same = (image_of == image_of[i]) & (sel.classes > 0)
        assert ref.box_iou(rois[sel.index[i], 1:][None], rois[sel.index[same], 1:]).max() < cfg.bg_iou


@pytest.mark.parametrize("options", [(), ("model.snap_pseudo_masks=true",), ("model.pseudo_seeds=mist",),
                                     ("model.img_background=false",)])  # fmt: skip
def test_a_negative_image_teaches_every_proposal_background_and_pairs_none(options):
    """`data.negatives`: an image with no class has no seed; each branch learns background on all
    its proposals with weight 1, the regressor pairs none, IMG/seg see at most its background."""
    model, _ = tiny(*options)
    images, rois, counts, labels = batch()
    labels[1] = 0
    loss, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0), blocks(images))
    assert all(torch.isfinite(v) for v in loss.values())
    sum(loss.values()).backward()
    sel = out["selection"]
    assert not (sel.classes[rois[sel.index, 0] == 1] > 0).any()
    negative = slice(counts[0], None)
    # the negative image's refinement term: -mean log p(background) over its proposals, in each branch
    expected = sum(-F.log_softmax(logits[negative].detach().float(), 1)[:, 0].mean() for logits in out["refine_logits"])
    alone, _ = model(images[1:], torch.cat([torch.zeros(counts[1], 1), rois[negative, 1:]], 1), counts[1:],
                     labels[1:], torch.Generator().manual_seed(0), blocks(images[1:]))  # fmt: skip
    assert alone["refine"].item() == pytest.approx(float(expected), rel=1e-4)
    assert alone["reg"].item() == 0.0
    both, _ = model(images, rois, counts, torch.zeros_like(labels), torch.Generator().manual_seed(0), blocks(images))
    assert all(torch.isfinite(v) for v in both.values())


def test_no_gradient_flows_through_the_pseudo_masks():
    model, _ = tiny()
    images, rois, counts, labels = batch()
    loss, _ = model(images, rois, counts, labels)
    loss["seg"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.img.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.seg.parameters())


@pytest.mark.parametrize(
    "overrides, keys",
    [
        (["model.img=false", "model.seg=false"], {"cls", "refine", "reg"}),
        (["model.seg=false"], {"cls", "refine", "reg", "img"}),
        (["model.regressor=none"], {"cls", "refine", "img", "seg"}),
        (["model.regressor=specific"], {"cls", "refine", "reg", "img", "seg"}),
        (["model.img_background=false"], {"cls", "refine", "reg", "img", "seg"}),
        (["model.img_weighted_gap=false", "model.img_log_smoothing=false"], {"cls", "refine", "reg", "img", "seg"}),
    ],
)
def test_ablation_switches(overrides, keys):
    model, cfg = tiny(*overrides)
    images, rois, counts, labels = batch()
    loss, out = model(images, rois, counts, labels)
    assert set(loss) == keys and all(torch.isfinite(v) for v in loss.values())
    sum(loss.values()).backward()
    if "model.regressor=specific" in overrides:
        assert out["offsets"].shape == (len(rois), 4 * C)
    if "model.img_background=false" in overrides:
        assert out["cams"].shape[2] == C and (out["selection"].classes > 0).all()
    res3, res4 = model.features(images[:1])
    maps = model.mask_maps(res3, res4, rois[:3], torch.tensor([1, 2, 3]))
    assert (maps is None) == (not cfg.img)


def test_seg_without_img_is_refused():
    with pytest.raises(ValueError, match="model.seg=true needs model.img=true"):
        config_lib.load(None, ["model.img=false"])


def test_mask_maps_are_eq10_before_the_threshold():
    model, cfg = tiny("model.seg_res3=false")  # the paper's head, on res5 alone
    images, rois, _, _ = batch()
    res3, res4 = model.features(images[:1])
    r = rois[:4].clone()
    r[:, 0] = 0
    classes = torch.tensor([1, 3, 2, 1])
    maps = model.mask_maps(res3, res4, r, classes)
    f5 = model._res5(res4, r)
    cams, _ = model.img(model._levels(res3, res4, f5, r))
    mean, _ = ref.cam_pseudo_masks(cams, cfg.xi)
    up = F.interpolate(f5, size=(cfg.mask_size, cfg.mask_size), mode="bilinear", align_corners=False)
    seg = torch.sigmoid(model.seg.out(model.seg.convs(up)))  # the head as written: on the upsampled map
    rows = torch.arange(4)
    torch.testing.assert_close(maps, (mean[rows, classes] + seg[rows, classes]) / 2)
    torch.testing.assert_close(model.mask_maps(res3, res4, r, classes, "seg"), seg[rows, classes])  # test.masks
    torch.testing.assert_close(model.mask_maps(res3, res4, r, classes, "img"), mean[rows, classes])


def test_the_segmentation_head_reads_res3_where_asked():
    """With model.seg_res3 the head's first layer adds a conv of res3 pooled to T x T per roi: its maps
    are that sum written out, and the seg loss trains that conv."""
    model, cfg = tiny("model.seg_res3=true", "model.backbone.freeze_at=0")
    images, rois, counts, labels = batch()
    res3, res4 = model.features(images[:1])
    r = rois[:4].clone()
    r[:, 0] = 0
    classes = torch.tensor([1, 3, 2, 1])
    f5 = model._res5(res4, r)
    up = F.interpolate(f5, size=(cfg.mask_size, cfg.mask_size), mode="bilinear", align_corners=False)
    l3 = ref.roi_pool(res3, r, cfg.mask_size, 1.0 / model.backbone.strides["res3"])
    first = F.relu(model.seg.convs[0](up) + model.seg.skip(l3))
    seg = torch.sigmoid(model.seg.out(model.seg.convs[2:](first)))
    rows = torch.arange(4)
    torch.testing.assert_close(model.mask_maps(res3, res4, r, classes, "seg"), seg[rows, classes])
    cams, _ = model.img(model._levels(res3, res4, f5, r))
    mean, _ = ref.cam_pseudo_masks(cams, cfg.xi)
    torch.testing.assert_close(model.mask_maps(res3, res4, r, classes), (mean[rows, classes] + seg[rows, classes]) / 2)
    loss, _ = model(images, rois, counts, labels)
    loss["seg"].backward()
    assert model.seg.skip.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="skip"):
        model.seg(f5)  # built to read res3: refusing to run without it


def test_test_masks_names_a_source():
    with pytest.raises(ValueError, match=r"test\.masks must be one of \('mean', 'seg', 'img'\), got 'both'"):
        config_lib.load(None, ["test.masks=both"])
    for bad in ("-0.1", "1"):
        with pytest.raises(ValueError, match=r"test\.mask_threshold must be in \[0, 1\)"):
            config_lib.load(None, [f"test.mask_threshold={bad}"])
    without_head, _ = tiny("model.seg=false")  # M alone, whatever test.masks says
    images, rois, _, _ = batch()
    res3, res4 = without_head.features(images[:1])
    r = rois[:2].clone()
    r[:, 0] = 0
    classes = torch.tensor([1, 2])
    torch.testing.assert_close(without_head.mask_maps(res3, res4, r, classes, "seg"),
                               without_head.mask_maps(res3, res4, r, classes, "img"))  # fmt: skip


@pytest.mark.parametrize("h,w,size", [(4, 4, 28), (7, 7, 28), (3, 5, 14), (1, 1, 6), (8, 8, 8), (9, 9, 6)])
def test_a_conv_on_the_upsampled_grid_equals_upsampling_first(h, w, size):
    """conv3x3_upsampled never forms the upsampled map; values and gradients are those of forming it."""
    torch.manual_seed(h * 100 + w)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1).double()
    x = torch.randn(4, 6, h, w, dtype=torch.float64, requires_grad=True)
    expected = conv(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
    got = conv3x3_upsampled(x, conv, size)
    torch.testing.assert_close(got, expected)
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(expected, [x, conv.weight, conv.bias], g)
    for a, b in zip(torch.autograd.grad(got, [x, conv.weight, conv.bias], g), grads):
        torch.testing.assert_close(a, b)
    assert conv3x3_upsampled(x[:0], conv, size).shape == (0, 5, size, size)  # no rois


def test_box_offsets_round_trip():
    p = torch.tensor([[0.0, 0, 10, 20], [5, 5, 7, 9]])
    g = torch.tensor([[1.0, 2, 12, 18], [4, 6, 9, 8]])
    torch.testing.assert_close(decode(p, encode(p, g)), g)
    assert encode(p, p).abs().max() == 0


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_every_loss_term_decreases_on_a_short_synthetic_run(tiny_root, seed, monkeypatch):
    """150 AdamW steps on two synthetic images (one fixed scale, no flip): the losses fall, whatever
    the initial weights."""
    from wsis.config import DataConfig
    from wsis.data.loader import TrainDataset, collate
    from wsis.model import losses

    # Eq.4 weighs each proposal by its seed's score, and those scores grow as MIDN learns, so the
    # refine loss itself may rise while the branches fit their targets better (seed 4 did). What
    # must fall is its cross-entropy per unit of weight: the loss over the mean weight, per branch.
    fit = []
    refine_loss = losses.refine_loss

    def recording(logits, labels, weights):
        out = refine_loss(logits, labels, weights)
        fit.append(out.item() / max(weights.mean().item(), 1e-12))
        return out

    monkeypatch.setattr(losses, "refine_loss", recording)
    model, _ = tiny("model.fc_std=0.01", classes=6, seed=seed)
    data = TrainDataset(tiny_root, DataConfig(scales=(112,), flip=False, max_boxes=40), seed=0)
    b = collate([data[0, 0], data[0, 1]])
    counts = [len(s.boxes) for s in b.samples]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for it in range(ITERS):
        fit.clear()
        loss, _ = model(b.images, b.rois, counts, b.labels, torch.Generator().manual_seed(it))
        history.append({k: v.item() for k, v in loss.items()} | {"refine per weight": sum(fit) / len(fit)})
        opt.zero_grad()
        sum(loss.values()).backward()
        opt.step()
    # The regression term is left out: on one batch it sums over the few proposals that overlap a
    # seed by more than 0.6, a set that changes as the seeds move, so it is flat noise (~5e-4).
    for k in ("cls", "refine per weight", "img", "seg"):
        first = sum(h[k] for h in history[:20]) / 20
        last = sum(h[k] for h in history[-20:]) / 20
        assert last < 0.8 * first, (k, first, last)


def test_pairwise_term_trains_the_segmentation_head_only():
    model, cfg = tiny("model.pairwise_weight=0.5")
    images, rois, counts, labels = batch()
    loss, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0))
    assert loss["pairwise"].item() > 0 and "pairwise" not in tiny()[0](images, rois, counts, labels)[0]
    loss["pairwise"].backward()
    assert any(p.grad is not None and p.grad.any() for p in model.seg.parameters())
    assert all(p.grad is None or not p.grad.any() for p in model.img.parameters())


@pytest.mark.parametrize("override", ["model.seg_channels=some", "model.reg_norm=none", "model.pairwise_weight=-1",
                                      "model.pairwise_tau=0", "model.pseudo_seeds=kmeans", "model.seed_top=0",
                                      "model.seed_graph_iou=1",
                                      "model.reg_target=box", "model.context_frame=0.5",
                                      "model.frame_dtype=half", "model.head_pool=2",
                                      "data.train_boxes=-1"])  # fmt: skip
def test_bad_mask_and_regression_options_are_named(override):
    with pytest.raises(ValueError, match=override.split("=")[0].replace(".", r"\.")):
        config_lib.load(None, [override])
    with pytest.raises(ValueError, match="segment needs model.snap_pseudo_masks=true"):
        config_lib.load(None, ["model.reg_target=segment", "model.snap_pseudo_masks=false"])


def test_snapped_pseudo_masks_are_segments_of_the_image():
    images, rois, counts, labels = batch()
    halves = torch.zeros(1, *images.shape[-2:], dtype=torch.int32)
    halves[..., 40:] = 1  # one granularity: the left and right halves of each image
    plain, _ = tiny()
    model, cfg = tiny("model.snap_pseudo_masks=true")
    loss, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0), [halves, halves])
    loss_plain, out_plain = plain(images, rois, counts, labels, torch.Generator().manual_seed(0))
    sel = out["selection"]
    fg = torch.nonzero(sel.classes > 0).flatten()
    assert len(fg) and torch.isfinite(loss["seg"])
    rows = torch.arange(len(sel.classes))
    snapped, before = out["pseudo_masks"][rows, sel.classes], out_plain["pseudo_masks"][rows, sel.classes]
    assert torch.equal(snapped[sel.classes == 0], before[sel.classes == 0])  # background proposals keep theirs
    for i in fg.tolist():  # each foreground mask is now one of the roi's segments: a run of whole columns
        m = snapped[i]
        assert (m.all(0) | ~m.any(0)).all()


def test_snapping_without_segments_is_a_clear_error():
    images, rois, counts, labels = batch()
    model, _ = tiny("model.snap_pseudo_masks=true")
    with pytest.raises(ValueError, match="graph segments of every image"):
        model(images, rois, counts, labels, torch.Generator().manual_seed(0))


def test_segment_regression_targets_take_the_segment_extent_within_the_growth_limit():
    model, _ = tiny("model.snap_pseudo_masks=true", "model.reg_target=segment")
    boxes = torch.tensor([[10.0, 10, 20, 20], [0, 0, 10, 10], [50, 50, 60, 60], [30, 30, 40, 40]])
    out = {"segment_rows": torch.tensor([0, 1, 2]),
           "segment_boxes": torch.tensor([[5.0, 5, 25, 25],  # 4x the area, holds the centre: taken
                                          [0, 0, 100, 100],  # 100x: a leak into the background, kept as is
                                          [float("nan")] * 4])}  # no segment  # fmt: skip
    targets = model._regression_targets(boxes, out)
    assert targets.tolist() == [[5, 5, 25, 25], [0, 0, 10, 10], [50, 50, 60, 60], [30, 30, 40, 40]]
    seed_model, _ = tiny("model.snap_pseudo_masks=true")
    assert torch.equal(seed_model._regression_targets(boxes, out), boxes)


def test_segment_regression_targets_train():
    images, rois, counts, labels = batch()
    losses = {}
    for target in ("seed", "segment"):
        model, _ = tiny("model.snap_pseudo_masks=true", f"model.reg_target={target}")
        loss, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0), blocks(images))
        assert torch.isfinite(loss["reg"])
        losses[target] = loss["reg"].item()
        if target == "segment":
            assert len(out["segment_rows"]) == int((out["selection"].classes > 0).sum())
            sum(loss.values()).backward()
            assert model.detector.regressor[-1].weight.grad.abs().sum() > 0
    assert losses["segment"] != losses["seed"]  # the 16-px squares reach beyond the seeds' boxes


def test_frame_mask_zeroes_the_cells_inside_the_box():
    assert torch.equal(frame_mask(7, 1.8), 1 - torch.nn.functional.pad(torch.ones(3, 3), (2, 2, 2, 2)))
    ring = 1 - torch.nn.functional.pad(torch.ones(5, 5), (1, 1, 1, 1))  # the grid's outer ring alone
    assert torch.equal(frame_mask(7, 1.2), ring) and torch.equal(frame_mask(7, 1.5), ring)
    assert frame_mask(7, 100.0).sum() == 48  # only the centre cell


@pytest.mark.parametrize("pool, inner", [(7, slice(2, 5)), (5, slice(1, 4))])
def test_contrastive_det_logits_are_the_box_minus_its_frame(pool, inner):
    """model.context_frame: MIDN's det logits are W v_box - W v_frame (the bias cancels), the frame
    pooled from the box scaled about its centre with the inner cells zeroed; the cls and refinement
    logits are unchanged, and the det layer learns from both terms. Box and frame are pooled to
    `model.head_pool` cells a side."""
    images, rois, counts, labels = batch()
    plain, _ = tiny("model.context_frame=0", f"model.head_pool={pool}")
    model, _ = tiny("model.context_frame=2.0", "model.frame_dtype=same", f"model.head_pool={pool}")
    _, out = model(images, rois, counts, labels, torch.Generator().manual_seed(0))
    _, out_plain = plain(images, rois, counts, labels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["cls_logits"], out_plain["cls_logits"])
    torch.testing.assert_close(out["refine_logits"][0], out_plain["refine_logits"][0])
    _, res4 = model.features(images)
    b = rois[:, 1:]
    centre, half = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2])  # scale 2: the half-size becomes the size
    outer = torch.cat([rois[:, :1], centre - half, centre + half], 1)
    pooled = ref.roi_pool(res4.detach().float(), outer, pool, 1 / 16)
    pooled[:, :, inner, inner] = 0  # the cells whose centres lie in the box (|u| < 1/2)
    frame = model.backbone.res5(pooled.contiguous(memory_format=torch.channels_last)).mean((2, 3))
    box = model.backbone.res5(ref.roi_pool(res4.detach().float(), rois, pool, 1 / 16)).mean((2, 3))
    w = model.detector.midn_det.weight
    torch.testing.assert_close(out["det_logits"], (box - frame) @ w.T, rtol=1e-4, atol=1e-5)
    out["det_logits"].sum().backward()  # the frame's features are constants; the det layer's weight learns
    torch.testing.assert_close(w.grad, (box - frame).detach().sum(0).expand_as(w), rtol=1e-4, atol=1e-5)
    assert model.detector.midn_det.bias.grad.abs().max() < 1e-6


@pytest.mark.parametrize("pool", [1, 2])
def test_a_pool_too_small_for_a_frame_trains_without_one(pool):
    with pytest.raises(ValueError, match=r"model\.head_pool must be >= 3 with model\.context_frame"):
        config_lib.load(None, [f"model.head_pool={pool}"])
    model, cfg = tiny("model.context_frame=0", f"model.head_pool={pool}")
    images, rois, counts, labels = batch()
    loss, _ = model(images, rois, counts, labels, torch.Generator().manual_seed(0))
    sum(loss.values()).backward()
    assert all(torch.isfinite(value) for value in loss.values())
    assert model.detector.midn_det.weight.grad.abs().sum() > 0
    with torch.no_grad():
        res3, res4 = model.features(images)
        scores, boxes = model.detect(res4, rois)
        maps = model.mask_maps(res3, res4, rois, scores.argmax(1))
    assert scores.shape == (len(rois), C) and boxes.shape[0] == len(rois)
    assert maps.shape == (len(rois), cfg.mask_size, cfg.mask_size) and torch.isfinite(maps).all()


def test_the_frame_pass_in_bfloat16_rounds_the_float32_features():
    """model.frame_dtype=bfloat16: the same frame features within bfloat16's rounding, in the model's dtype."""
    images, rois, _, _ = batch()
    same, _ = tiny("model.frame_dtype=same")
    bf16, _ = tiny("model.frame_dtype=bfloat16")
    _, res4 = same.features(images)
    want, got = same._frame_features(res4, rois), bf16._frame_features(res4, rois)
    assert got.dtype == want.dtype == torch.float32 and not torch.equal(got, want)
    torch.testing.assert_close(got, want, rtol=0, atol=0.03 * want.abs().max().item())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # "same" keeps an enclosing AMP region's dtype
        assert torch.equal(same._frame_features(res4, rois), got)


@pytest.mark.parametrize("setting, device, native, bf16", [
    ("auto", "cpu", True, True), ("auto", "cpu", False, False), ("auto", "cuda", True, False),
    ("same", "cpu", True, False), ("bfloat16", "cpu", False, True), ("bfloat16", "cuda", False, True)])  # fmt: skip
def test_frame_dtype_auto_takes_bfloat16_only_on_a_cpu_that_computes_it(setting, device, native, bf16, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.frame_in_bf16(setting, torch.device(device)) == bf16


@pytest.mark.parametrize("flags, native", [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 amx_tile", True),
                                           ("fpu avx512f avx512bw", False)])  # fmt: skip
def test_native_bf16_is_read_from_the_cpu_flags(flags, native, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: A CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert precision.cpu_has_native_bf16(str(cpuinfo)) is native
    assert precision.cpu_has_native_bf16(str(tmp_path / "absent")) is False
    # the one reader of cpuinfo, which the run's environment record uses for the CPU's name too
    assert precision.cpuinfo_field("model name", str(cpuinfo)) == "A CPU"
    assert precision.cpuinfo_field("microcode", str(cpuinfo)) is None
