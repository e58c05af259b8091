"""python -m wsis.train: run folder, exact resume, divergence, Ctrl-C, config errors, DDP on gloo."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from conftest import needs_timm, tiny_config
from wsis import train
from wsis.data import segments
from wsis.engine import allocator, checkpoint
from wsis.engine.distributed import World
from wsis.engine.run_folder import RunFolder
from wsis.engine.trainer import StepSchedule, Trainer, TrainingDiverged
from wsis.model import network

needs_timm()


def records_of(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def losses_of(run_dir):
    return [r for r in records_of(run_dir) if "loss" in r]


def test_a_run_writes_its_folder_and_evaluates(tiny_root, tmp_path):
    run_dir = train.run(tiny_config(tiny_root, tmp_path / "run", "solver.eval_period=2"))
    assert (run_dir / "config.yaml").is_file()
    assert [r["iteration"] for r in losses_of(run_dir)] == [1, 2, 3, 4]
    evals = [r for r in records_of(run_dir) if "val_mAP@0.5" in r]  # periodic, then the final evaluation
    assert [r["iteration"] for r in evals] == [2, 4] and all(0 <= r["val_mAP@0.5"] <= 100 for r in evals)
    assert (run_dir / "pictures" / "curves.png").stat().st_size > 0
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"model_0000002.pt", "model_0000004.pt", "last.pt"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert evals[-1]["val_mAP@0.5"] == metrics["mAP@0.5"]
    for key in ("mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc", "num_images", "per_class"):
        assert key in metrics
    assert metrics["num_images"] == 3 and metrics["corloc_split"] == "val"
    assert metrics["postprocessed"]["method"] == "segments"  # test.postprocess, scored beside the model's own masks
    # the val images' segments, computed in the pool before training, for the post-processing to read
    assert all(segments.cache_path(tiny_root, f"syn_00000{i}").is_file() for i in (6, 7, 8))
    assert (run_dir / "predictions.json").is_file()
    assert sorted(p.name for p in (run_dir / "pictures").iterdir()) == ["curves.png", "syn_000006.png", "syn_000007.png",
                                                                       "syn_000008.png"]
    with Image.open(run_dir / "pictures" / "syn_000006.png") as picture, \
            Image.open(tiny_root / "JPEGImages" / "syn_000006.jpg") as image:  # fmt: skip
        assert picture.size == (2 * image.width + 4, image.height)  # own masks | after test.postprocess


def test_resume_continues_exactly(tiny_root, tmp_path):
    full = train.run(tiny_config(tiny_root, tmp_path / "full", "evaluate=false"))
    half = train.run(tiny_config(tiny_root, tmp_path / "half", "evaluate=false", "solver.max_iter=2"))
    cfg, resume = train.parse(["--resume", str(half), "solver.max_iter=4"])
    train.run(cfg, resume)
    a, b = losses_of(full), losses_of(half)
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        assert {k: x[k] for k in ("cls", "refine", "reg", "img", "seg", "lr")} == \
               {k: y[k] for k in ("cls", "refine", "reg", "img", "seg", "lr")}  # fmt: skip
    sa = checkpoint.load(full / "checkpoints" / "last.pt")["model"]
    sb = checkpoint.load(half / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_run_folder_is_not_overwritten(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, tmp_path / "run", "evaluate=false", "solver.max_iter=1")
    train.run(cfg)
    with pytest.raises(FileExistsError, match="--resume"):
        train.run(cfg)


def test_a_nan_loss_stops_with_the_last_checkpoint_intact(tiny_root, tmp_path, monkeypatch):
    real, calls = network.losses.midn_loss, []

    def poisoned(phi, labels):
        calls.append(1)
        out = real(phi, labels)
        return out * float("nan") if len(calls) > 6 else out  # iteration 4 (2 images an iteration)

    monkeypatch.setattr(network.losses, "midn_loss", poisoned)
    cfg = tiny_config(tiny_root, tmp_path / "run", "evaluate=false", "solver.max_iter=6")
    with pytest.raises(TrainingDiverged, match="loss is nan at iteration 3 .*last good checkpoint"):
        train.run(cfg)
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 2


def test_ctrl_c_saves_a_checkpoint_that_resumes(tiny_root, tmp_path, monkeypatch):
    real, calls = network.losses.midn_loss, []

    def interrupt(phi, labels):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(phi, labels)

    monkeypatch.setattr(network.losses, "midn_loss", interrupt)
    cfg = tiny_config(tiny_root, tmp_path / "run", "evaluate=false", "solver.checkpoint_period=100")
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg)
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 3
    monkeypatch.setattr(network.losses, "midn_loss", real)
    train.run(*train.parse(["--resume", str(tmp_path / "run")]))
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 4


def test_a_wrong_config_key_lists_the_valid_keys(capsys):
    with pytest.raises(SystemExit):
        train.parse(["solver.learning_rate=0.1"])
    err = capsys.readouterr().err
    assert "unknown config key 'solver.learning_rate'" in err and "solver.lr" in err
    with pytest.raises(SystemExit):
        train.parse(["solver.lr=fast"])
    assert "solver.lr: cannot use 'fast' as a float" in capsys.readouterr().err


def test_the_shipped_configs_load(tmp_path):
    from pathlib import Path

    from wsis import config as config_lib

    configs = Path(__file__).resolve().parent.parent / "configs"
    assert config_lib.load(configs / "synthetic.yaml") == config_lib.Config()  # the file states the defaults
    paper = config_lib.load(configs / "voc2012_r50.yaml")
    assert paper.model.backbone.name == "resnet50_gn" and paper.solver.max_iter == 120000 and paper.solver.steps == (90000,)
    assert (paper.test.masks, paper.test.mask_threshold) == ("mean", paper.model.xi)  # Eq.10 as printed
    with pytest.raises(ValueError, match="data.classes='voc' selects the classes of a YOLO-format root or names those "
                                         "of a tags file: set data.root"):
        config_lib.load(configs / "coco128_voc.yaml")  # the photos' config needs their root
    photos = config_lib.load(configs / "coco128_voc.yaml", ["data.root=photos"])
    assert photos.data.classes == "voc" and photos.model == config_lib.Config().model
    voc07 = config_lib.load(configs / "voc07_cpu.yaml", ["data.root=VOC2007"])
    assert (voc07.data.train_split, voc07.data.val_split, voc07.test.corloc_split) == ("trainval",) * 3
    assert voc07.model.backbone == config_lib.Config().model.backbone and not voc07.model.snap_pseudo_masks


# The keys that `configs/voc2012_r50.yaml` may leave to the defaults: the run's own knobs, not the method.
RUN_KEYS = {"output_dir", "device", "seed", "deterministic", "evaluate", "data.root", "data.classes", "data.workers",
            "data.synthetic_dir", "solver.log_period", "solver.eval_period", "solver.checkpoint_period"}


def paper_settings():
    """The rows of docs/PAPER_SETTINGS.md's table: {key: value as YAML reads it}."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parent.parent / "docs" / "PAPER_SETTINGS.md").read_text()
    rows = re.findall(r"^\| `([a-z_.0-9]+)` \| `([^`]*)` \|", text, re.M)
    return {key: yaml.safe_load(value) for key, value in rows}


def test_the_papers_config_names_every_method_key_and_matches_the_papers_table():
    from pathlib import Path

    import yaml

    from wsis import config as config_lib

    path = Path(__file__).resolve().parent.parent / "configs" / "voc2012_r50.yaml"
    named = set(config_lib._flatten(yaml.safe_load(path.read_text())))
    method = {k for k in config_lib.keys(config_lib.Config()) if k not in RUN_KEYS and not k.startswith("data.synthetic.")}
    assert method - named == set(), "keys that the CPU default would decide in the paper's config"
    table = paper_settings()
    assert set(table) == method, "docs/PAPER_SETTINGS.md has a row for each of them, and no other"
    cfg = config_lib.to_dict(config_lib.load(path))
    for key, value in table.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value or str(node) == str(value), (key, node, value)
    assert cfg["model"]["backbone"]["freeze_head"] is False  # res5 trains, as the paper's end-to-end network


def test_step_schedule():
    s = StepSchedule((10, 20), 0.1, warmup_iters=4, warmup_factor=0.5)
    assert [round(s(i), 6) for i in (0, 2, 4, 9, 10, 20)] == [0.5, 0.75, 1.0, 1.0, 0.1, 0.01]


def _ddp_worker(rank, world, port, root, out, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from wsis.engine import distributed

    cfg = tiny_config(root, out, "evaluate=false", "solver.max_iter=3")
    w = distributed.init("cpu")
    trainer = Trainer(cfg, RunFolder(out), root, w, torch.device("cpu"))
    (out).mkdir(parents=True, exist_ok=True)
    trainer.train(log=lambda *a: None)
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    torch.distributed.all_gather(gathered, flat)
    results[rank] = bool(all(torch.equal(gathered[0], g) for g in gathered))
    distributed.cleanup(w)


def test_ddp_on_two_cpu_processes_keeps_ranks_identical(tiny_root, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, tiny_root, tmp_path / "ddp", results), nprocs=2)
    assert dict(results) == {0: True, 1: True}
    assert {p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()} == {"model_0000002.pt", "model_0000003.pt", "last.pt"}


LOSS_KEYS = ("loss", "cls", "refine", "reg", "img", "seg", "lr")


def test_the_same_seed_gives_the_same_losses(tiny_root, tmp_path):
    """Bit-identical losses for the same seed on one machine and thread count, with a loader process
    or without (data.workers=0 loads the same batches); another seed differs."""
    runs = [train.run(tiny_config(tiny_root, tmp_path / name, "evaluate=false", "solver.max_iter=12",
                                  f"data.workers={workers}", f"seed={seed}"))  # fmt: skip
            for name, seed, workers in (("a", 0, 1), ("b", 0, 1), ("c", 1, 1), ("d", 0, 0))]
    a, b, c, d = ([{k: r[k] for k in LOSS_KEYS} for r in losses_of(run)] for run in runs)
    assert len(a) == 12 and a == b == d
    assert a != c


def test_the_run_folder_records_its_environment(tiny_root, tmp_path, capsys):
    import wsis

    run_dir = train.run(tiny_config(tiny_root, tmp_path / "run", "evaluate=false", "solver.max_iter=2", "seed=5"))
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["wsis"] == wsis.__version__ and env["seed"] == 5
    for key in ("git_commit", "git_dirty", "torchvision", "timm", "numpy", "opencv", "pycocotools", "pillow",
                "wsis_C_cuda_kernels", "threads", "cpu", "cpu_bf16", "cuda", "argv"):  # fmt: skip
        assert key in env
    assert env["threads"] == torch.get_num_threads()
    assert env["malloc"] == allocator.state() != "process defaults (keep_freed_memory not called)"
    assert "environment: wsis" in capsys.readouterr().out
    env["torch"] = "0.0.0"  # as if the run had begun under another torch
    (run_dir / "env.json").write_text(json.dumps(env))
    train.run(*train.parse(["--resume", str(run_dir), "solver.max_iter=3"]))
    out = capsys.readouterr().out
    assert f"torch: '0.0.0' -> '{torch.__version__}'" in out and "seed" not in out.split("warning")[-1]
    assert json.loads((run_dir / "env.json").read_text())["torch"] == "0.0.0"  # the original record is kept


def test_the_deterministic_switch_trains_and_changes_nothing_on_the_cpu(tiny_root, tmp_path):
    plain = train.run(tiny_config(tiny_root, tmp_path / "plain", "evaluate=false", "solver.max_iter=3"))
    try:
        strict = train.run(tiny_config(tiny_root, tmp_path / "strict", "evaluate=false", "solver.max_iter=3",
                                       "deterministic=true"))  # fmt: skip
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert [{k: r[k] for k in LOSS_KEYS} for r in losses_of(plain)] == [{k: r[k] for k in LOSS_KEYS} for r in losses_of(strict)]


def test_the_eval_hook_runs_at_its_period_and_the_final_evaluation_on_cfg_device(tiny_root, tmp_path, monkeypatch):
    calls = []
    real = train.evaluate_model

    def recording(model, cfg, root, split, corloc_split, device, *args, **kwargs):
        calls.append((kwargs.get("what", "final"), device))
        return real(model, cfg, root, split, corloc_split, device, *args, **kwargs)

    monkeypatch.setattr(train, "evaluate_model", recording)
    train.run(tiny_config(tiny_root, tmp_path / "run", "solver.max_iter=5", "solver.eval_period=2", "device=cpu"))
    assert calls == [("eval@2", torch.device("cpu")), ("eval@4", torch.device("cpu")), ("final", torch.device("cpu"))]


def test_hooks_run_after_each_step_and_at_the_end(tiny_root, tmp_path):
    from wsis.engine.hooks import Hook

    seen = []

    class Recorder(Hook):
        def after_step(self, trainer, record):
            seen.append((trainer.iteration, record["iteration"], set(LOSS_KEYS) <= set(record)))

        def after_train(self, trainer):
            seen.append("end")

    cfg = tiny_config(tiny_root, tmp_path / "run", "evaluate=false", "solver.max_iter=3")
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, RunFolder(tmp_path / "run"), tiny_root, World(), torch.device("cpu"))
    trainer.hooks.append(Recorder())
    trainer.train(log=lambda *a: None)
    assert seen == [(1, 1, True), (2, 2, True), (3, 3, True), "end"]
    assert [r["iteration"] for r in losses_of(tmp_path / "run")] == [1, 2, 3]  # the default log hook ran before it


def test_one_step_of_the_papers_voc_config_on_random_weights(tiny_root, tmp_path):
    """The same network at the paper's settings (ResNet50-GN, res3-res5 trained, IMG 512 / seg 256
    wide, Eq.2's unit weights), one step on the tiny set: every term is finite and a checkpoint is written."""
    from pathlib import Path

    from wsis import config as config_lib

    paper = Path(__file__).resolve().parent.parent / "configs" / "voc2012_r50.yaml"
    cfg = config_lib.load(paper, [f"data.root={tiny_root}", f"output_dir={tmp_path / 'run'}", "data.train_split=train",
                                  "model.backbone.weights=none", "data.scales=[96]", "data.max_size=128",
                                  "data.max_boxes=20", "data.workers=0", "solver.max_iter=1", "solver.log_period=1",
                                  "evaluate=false"])  # fmt: skip
    assert cfg.model.img_loss_weight == cfg.model.seg_loss_weight == 1.0 and cfg.model.backbone.freeze_at == "2"
    assert (cfg.model.seg_channels, cfg.model.reg_norm, cfg.model.pairwise_weight, cfg.model.snap_pseudo_masks) == (
        "all", "all", 0, False)  # as printed
    run_dir = train.run(cfg)
    (record,) = losses_of(run_dir)
    assert all(torch.isfinite(torch.tensor(record[k])) for k in LOSS_KEYS)
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["config"]["model"]["backbone"]["name"] == "resnet50_gn"


def test_periodic_evaluation_does_not_change_the_training(tiny_root, tmp_path):
    runs = [train.run(tiny_config(tiny_root, tmp_path / name, f"solver.eval_period={period}", "test.postprocess=none"))
            for name, period in (("with", 2), ("without", 0))]  # fmt: skip
    with_eval, without = ([{k: r[k] for k in LOSS_KEYS} for r in losses_of(run)] for run in runs)
    assert with_eval == without


def test_the_communitys_warm_start_holds_its_terms_then_ramps_them_in(tiny_root, tmp_path):
    from wsis import config as config_lib
    from wsis.model.losses import community_weight

    assert [community_weight(i, 2) for i in range(6)] == [0, 0, 0, 0.5, 1, 1]
    assert community_weight(0, 0) == 1.0
    plain = train.run(tiny_config(tiny_root, tmp_path / "plain", "solver.max_iter=6"))
    warm = train.run(tiny_config(tiny_root, tmp_path / "warm", "solver.max_iter=6", "solver.community_start=2"))
    p, w = losses_of(plain), losses_of(warm)
    assert all(r["img"] == r["seg"] == r["reg"] == 0 for r in w[:3])  # iterations 0-2: Detector only
    assert all(r["img"] > 0 and r["seg"] > 0 for r in w[3:])  # then the terms rise in
    assert w[0]["cls"] == p[0]["cls"] and w[0]["refine"] == p[0]["refine"]  # the same first forward pass
    assert w[1]["cls"] != p[1]["cls"]  # the first update differs: no community gradient in it
    with pytest.raises(ValueError, match="solver.community_start"):
        config_lib.load(None, ["solver.max_iter=6", "solver.community_start=4"])
