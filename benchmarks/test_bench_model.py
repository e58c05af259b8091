"""End-to-end model speed: one training iteration (forward + backward + SGD step) and inference of
one image, for the CPU default config and for ResNet50-GN at the paper's scale (CUDA only: on a
CPU one paper-scale iteration takes minutes, too long to repeat)."""
from pathlib import Path

import pytest
import torch
from bench_inputs import proposals

from wsis import config as config_lib
from wsis.engine.trainer import build_optimizer
from wsis.inference import Predictor
from wsis.data.loader import Sample
from wsis.model import CommunityNet

pytest.importorskip("timm", reason="timm is not installed (the lean CPU-only torch): no model to time")

SETTINGS = {
    # name: (config file or None, image size (h, w), proposals an image, classes)
    "cpu_default": (None, (384, 432), 100, 6),
    "r50_paper": (Path(__file__).resolve().parent.parent / "configs" / "voc2012_r50.yaml", (688, 1000), 2000, 20),
}


def _model(name, device):
    path, (h, w), r, c = SETTINGS[name]
    if name == "r50_paper" and device != "cuda":
        pytest.skip("ResNet50-GN at the paper's scale is benchmarked on CUDA only")
    cfg = config_lib.load(path, ["model.backbone.weights=none"])  # speed does not depend on the weights
    torch.manual_seed(0)
    model = CommunityNet(cfg.model, c).to_device(device)
    return cfg, model, (h, w), r, c


def _batch(h, w, r, c, device, images=2):
    boxes = [proposals(r, h, w, device=device, seed=i) for i in range(images)]
    rois = torch.cat([torch.cat([torch.full((r, 1), float(i), device=device), b], 1) for i, b in enumerate(boxes)])
    labels = torch.zeros(images, c, device=device)
    labels[:, 0] = labels[-1, 1] = 1
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([(y // k) * 1000 + x // k + 10**6 * g for g, k in enumerate((12, 24, 48))]).int()  # 3 granularities
    return torch.randn(images, 3, h, w, device=device), rois, [r] * images, labels, [grid] * images


def _train_step(model, opt, batch, amp):
    """One training iteration on `_batch`'s output: forward under `amp`, backward, optimizer step."""
    images, rois, counts, labels, segments = batch
    with amp:
        losses, _ = model(images, rois, counts, labels, torch.Generator().manual_seed(0), segments)
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()


@pytest.mark.parametrize("layout", ["placed", "nchw"])  # placed: to_device's choice (channels_last on the CPU)
@pytest.mark.parametrize("name", list(SETTINGS))
def test_train_iteration(run, device, name, layout, benchmark):
    benchmark.group = f"train iteration, 2 images [{device}]"
    cfg, model, (h, w), r, c = _model(name, device)
    if layout == "nchw":
        if device != "cpu":
            pytest.skip("to_device already keeps NCHW off the CPU")
        model.memory_format = torch.contiguous_format
        model.to(memory_format=model.memory_format)
    opt, _ = build_optimizer(cfg, model)
    batch = _batch(h, w, r, c, device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    run(_train_step, model, opt, batch, amp, rounds=3)


@pytest.mark.parametrize("proposals_an_image", [100, 64, 48])
def test_train_iteration_proposals(run, device, proposals_an_image, benchmark):
    """The CPU default's iteration against the proposals a training image keeps (`data.train_boxes`):
    the per-proposal head, its frame pass and their backward scale with them."""
    benchmark.group = f"train iteration by proposals an image, 2 images [{device}]"
    cfg, model, (h, w), _, c = _model("cpu_default", device)
    opt, _ = build_optimizer(cfg, model)
    batch = _batch(h, w, proposals_an_image, c, device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    run(_train_step, model, opt, batch, amp, rounds=3)


@pytest.mark.parametrize("views", [1, 10])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_inference_one_image(run, device, name, views, benchmark):
    """One view, or the paper's ensemble of 5 scales x flip (10 views)."""
    benchmark.group = f"inference of one image, {views} view(s) [{device}]"
    cfg, model, (h, w), r, c = _model(name, device)
    cfg.test.max_detections = 20
    scales = (480, 576, 688, 864, 1000) if views == 10 else (min(h, w),)
    samples = []
    for s in scales:
        f = s / min(h, w)
        hh, ww = round(h * f), round(w * f)
        for flipped in ((False, True) if views == 10 else (False,)):
            samples.append(Sample(torch.randn(3, hh, ww), proposals(r, hh, ww), torch.zeros(c), "x", f, flipped))
    predictor = Predictor(model, cfg.test, torch.device(device))
    run(predictor, samples, (h, w), rounds=2)


@pytest.mark.parametrize("path", ["upsampled_first", "conv3x3_upsampled"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_res5_conv_on_the_mask_grid(run, device, name, path, benchmark):
    """IMG's res5 level and the segmentation head's first conv: a 3x3 conv on res5 (4x4 cells a
    proposal) upsampled to 28x28, forward and backward; formed first, or read through the upsampling."""
    import torch.nn.functional as F

    from wsis.model.heads import conv3x3_upsampled

    if name == "r50_paper" and device != "cuda":
        pytest.skip("the paper's sizes (256 samples, 2048 channels: 1.6 GB upsampled) on CUDA only")
    benchmark.group = f"3x3 conv on res5 upsampled to 28x28, fwd+bwd, {name} [{device}]"
    samples, cin, cout = {"cpu_default": (16, 320, 32), "r50_paper": (256, 2048, 512)}[name]
    layout = torch.channels_last if device == "cpu" else torch.contiguous_format
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(device, memory_format=layout)
    x = torch.randn(samples, cin, 4, 4, device=device).contiguous(memory_format=layout).requires_grad_()

    def step():
        if path == "upsampled_first":
            y = conv(F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False))
        else:
            y = conv3x3_upsampled(x, conv, 28)
        y.relu().sum().backward()

    run(step)


@pytest.mark.parametrize("dtype", ["same", "bfloat16"])
def test_frame_pass(run, device, dtype, benchmark):
    """The CPU default's frame pass (`model.frame_dtype`): the frozen head on each proposal's frame,
    without gradient, 200 proposals on two 384x432 images. bfloat16 is what `auto` picks on a CPU with
    AVX512-BF16 or AMX; elsewhere it is emulated."""
    benchmark.group = f"frame pass of the CPU default, 200 proposals [{device}]"
    cfg, model, (h, w), r, c = _model("cpu_default", device)
    model.cfg.frame_dtype = dtype
    images, rois, *_ = _batch(h, w, r, c, device)
    with torch.no_grad():
        _, res4 = model.features(images)
    run(model._frame_features, res4, rois)


def _step_worker(malloc, pipe):
    """A fresh process (glibc's allocator state is per process) that runs one CPU-default training
    iteration each time it is asked."""
    import resource

    from wsis.engine import allocator

    if malloc == "kept":
        allocator.keep_freed_memory()
    torch.set_num_threads(int(pipe.recv()))
    cfg, model, (h, w), r, c = _model("cpu_default", "cpu")
    opt, _ = build_optimizer(cfg, model)
    # the default's training scales in turn: tensors change size from step to step, as in training
    batches = [_batch(s, s * w // h, r, c, "cpu") for s in cfg.data.scales]
    step = 0
    while pipe.recv() == "step":
        batch, step = batches[step % len(batches)], step + 1
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        _train_step(model, opt, batch, torch.autocast("cpu", enabled=False))
        pipe.send(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)


@pytest.mark.parametrize("malloc", ["kept", "glibc_default"])
def test_train_iteration_allocator(run, device, malloc, benchmark):
    """The CPU default's training iteration, at each training scale in turn, with freed memory kept
    (`engine.allocator`, what the command line does) or with glibc's defaults, each in its own
    process; extra_info holds the minor page faults of the last step."""
    import multiprocessing

    if device != "cpu":
        pytest.skip("glibc's allocator holds the CPU's tensors")
    benchmark.group = "train iteration, cpu_default, glibc malloc settings [cpu]"
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    worker = multiprocessing.get_context("spawn").Process(target=_step_worker, args=(malloc, theirs), daemon=True)
    worker.start()
    try:
        ours.send(str(torch.get_num_threads()))

        def step():
            ours.send("step")
            benchmark.extra_info["page_faults"] = ours.recv()

        for _ in range(3):  # builds the model's lazy state and the heap outside the timed rounds
            step()
        run(step, rounds=9)
    finally:
        if worker.is_alive():  # a worker that died has already said why (its traceback)
            ours.send("stop")
        worker.join(timeout=60)
