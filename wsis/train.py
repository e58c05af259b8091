"""python -m wsis.train [--config FILE] [--resume RUN_DIR] [key=value ...]

With no arguments: generate the synthetic data set and its proposals (once, cached), train the
CPU default config, evaluate on the val split, and print where everything went. Several
processes: `torchrun --nproc_per_node N -m wsis.train ...` (NCCL on GPUs, gloo on CPUs).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from . import config as config_lib
from .data import segments
from .data.cache import cache_root
from .data.prepare import prepare
from .data.scan import scan
from .data.tags import is_tags_file
from .engine import allocator, distributed, environment
from .engine.hooks import record_eval
from .engine.run_folder import RunFolder
from .engine.trainer import Trainer, TrainingDiverged
from .evaluation import evaluate_model, postprocess_detections, table, write
from .model.backbone import WeightsUnavailable, imagenet_state
from .visualize import save_pictures


def parse(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(prog="python -m wsis.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="a YAML config (e.g. configs/voc2012_r50.yaml); defaults: the CPU default")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its checkpoints/last.pt, with its config.yaml")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. solver.max_iter=200")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            if args.config:
                parser.error("--resume uses the run's own config.yaml; pass changes as key=value")
            cfg = config_lib.load(args.resume / "config.yaml", args.overrides, saved=True)
            cfg.output_dir = str(args.resume)
        else:
            cfg = config_lib.load(args.config, args.overrides)
    except (KeyError, ValueError, FileNotFoundError) as e:
        parser.error(str(e.args[0]) if isinstance(e, KeyError) else str(e))
    return cfg, args.resume


def record_environment(run: RunFolder, cfg: config_lib.Config, device, resume: bool, say) -> None:
    """`env.json` of a new run; on resume the original is kept and each fact that changed is named."""
    env = environment.collect(cfg.seed, device)
    say(f"environment: {environment.short(env)}")
    original = environment.read(run.env) if resume else None
    if original is None:
        environment.write(env, run.env)
        return
    for change in environment.differences(original, env):
        say(f"warning: resumed in another environment than the run began in: {change}")


class RunEvaluation:
    """The run's one evaluation path, on `cfg.device`, over data.val_split: called every
    `solver.eval_period` iterations by the trainer's hook (mAP^r@0.5), and `final` once at the end
    (every metric, CorLoc on test.corloc_split, test.postprocess beside the model's own masks;
    metrics.json, predictions.json and pictures in the run folder)."""

    def __init__(self, cfg: config_lib.Config, root: Path, run: RunFolder, device, classes: List[str],
                 seen_in_training: int = 0):  # fmt: skip
        self.cfg, self.root, self.run, self.device, self.classes = cfg, root, run, device, classes
        self.seen_in_training = seen_in_training  # val images that are training images too

    def __call__(self, model, iteration: int) -> float:
        m, _, _ = evaluate_model(model, self.cfg, self.root, self.cfg.data.val_split, None, self.device,
                                 what=f"eval@{iteration}", classes=self.classes)  # fmt: skip
        return m["mAP@0.5"]

    def final(self, model, iteration: int) -> Dict[str, object]:
        cfg = self.cfg
        # the model's classes matched by name onto the split's: a tags file's (sorted, or data.classes)
        # may be fewer than a VOC list's, or in another order
        m, dets, data = evaluate_model(model, cfg, self.root, cfg.data.val_split, cfg.test.corloc_split or None,
                                       self.device, cfg.test.postprocess, classes=self.classes)  # fmt: skip
        m["val_images_in_training"] = self.seen_in_training
        write(self.run.root, m, dets, data)
        post = postprocess_detections(cfg.test.postprocess, data.image_path, cfg.test, data.root)
        save_pictures(dets, data.image_path, self.classes, self.run.pictures, post=post)
        print(table(m))
        if self.seen_in_training:
            print(transductive_note(self.seen_in_training, len(data.image_ids), cfg.data))
        record_eval(self.run, iteration, m["mAP@0.5"])  # the last point of the curve
        return m


def transductive_note(shared: int, total: int, d: config_lib.DataConfig) -> str:
    return (f"evaluation: {shared} of the {total} images of {d.val_split} are training images of {d.train_split}: "
            "the figures are transductive (as WSOD's CorLoc on trainval): their image-level labels were trained on, "
            "their boxes and masks never were")


def scored(cfg: config_lib.Config) -> bool:
    """Whether the run evaluates at its end: `evaluate` and a `data.val_split` to score."""
    return cfg.evaluate and bool(cfg.data.val_split)


def run_splits(cfg: config_lib.Config) -> Dict[str, str]:
    """The splits a run reads, by the config key that names them."""
    splits = {"data.train_split": cfg.data.train_split}
    if scored(cfg) and is_tags_file(cfg.data.val_split):
        raise ValueError(f"data.val_split={cfg.data.val_split}: a tags-only split has no boxes or masks to score; "
                         "evaluate on a split with boxes (a VOC list, a COCO JSON, a YOLO split) or train without "
                         "scoring (data.val_split= or evaluate=false)")  # fmt: skip
    if scored(cfg):
        splits["data.val_split"] = cfg.data.val_split
        if cfg.test.corloc_split:
            splits["test.corloc_split"] = cfg.test.corloc_split
    return splits


def run(cfg: config_lib.Config, resume: Optional[Path] = None) -> Path:
    allocator.keep_freed_memory()
    world = distributed.init(distributed.device_kind(cfg.device))
    device = distributed.pick_device(cfg.device, world)
    distributed.set_deterministic(cfg.deterministic)
    run = RunFolder(cfg.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    say = print if world.main else (lambda *a, **k: None)
    seen = 0  # val images that are training images too (rank 0 finds them)
    try:
        if world.main:
            # Unreachable weights fail here, in seconds, before a run folder exists.
            imagenet_state(cfg.model.backbone.name, cfg.model.backbone.weights)
            run.root.mkdir(parents=True, exist_ok=True)
            if not resume and run.last_checkpoint.is_file():
                raise FileExistsError(f"{run.root} already holds a run; continue it with --resume {run.root} or pick another output_dir")
            run.config.write_text(config_lib.to_yaml(cfg))
            say(f"run folder: {run.root.resolve()}  (device {device}, {world.size} process{'es' if world.size > 1 else ''})")
            record_environment(run, cfg, device, resume is not None, say)
            d = cfg.data
            root = prepare(d, run_splits(cfg))  # a split the root lacks stops here
            # bad files stop here
            train_data = scan(root, d.train_split, d.proposal_mode, d.min_box, scale=d.proposal_scale, classes=d.classes,
                              negatives=d.negatives)  # fmt: skip
            if not scored(cfg):
                say("evaluation: none (evaluate=false or data.val_split empty): the run trains and saves, nothing is scored")
            else:  # and those that would stop the evaluation at the end
                val_data = scan(root, d.val_split, d.proposal_mode, d.min_box, ground_truth=True,
                                scale=d.proposal_scale, classes=d.classes)
                seen = len(set(train_data.image_ids) & set(val_data.image_ids))
                if seen:
                    say(transductive_note(seen, len(val_data.image_ids), d))
            if cfg.model.snap_pseudo_masks:  # once the images are known to decode
                segments.compute(root, cfg.data.train_split)
            if scored(cfg) and cfg.test.postprocess == "segments":  # computed in the pool, read by the evaluation
                segments.compute(root, cfg.data.val_split)
            caches = cache_root(root)
            say(f"data: {root.resolve()}" + (f" (read-only: caches in {caches})" if caches != root else ""))
            if train_data.skipped:
                say(f"data: {train_data.skipped} images of {cfg.data.train_split} hold none of the classes and are left "
                    f"out (data.negatives=true keeps them as negatives); {len(train_data)} remain")  # fmt: skip
        distributed.barrier(world)
        if not world.main:  # rank 0 made the data; the others only need its root
            root = prepare(cfg.data, [], progress=False)
        trainer = Trainer(cfg, run, root, world, device)
        evaluation = RunEvaluation(cfg, root, run, device, trainer.classes, seen) if scored(cfg) else None
        trainer.evaluate = evaluation
        if resume:
            trainer.resume()
            say(f"resumed at iteration {trainer.iteration}")
        last = trainer.train(log=say)
        say(f"checkpoint: {last.resolve()}")
        if evaluation is not None and world.main:
            m = evaluation.final(trainer.model.eval(), trainer.iteration)
            say(f"metrics: {run.metrics.resolve()}  mAP@0.5 {m['mAP@0.5']:.1f}  CorLoc {m['CorLoc']:.1f}")
        say(f"done: everything is in {run.root.resolve()}")
        return run.root
    finally:
        distributed.cleanup(world)


def main(argv: Optional[List[str]] = None) -> None:
    cfg, resume = parse(argv)
    try:
        run(cfg, resume)
    except KeyboardInterrupt:
        sys.exit(130)
    except (TrainingDiverged, FileExistsError, FileNotFoundError, ValueError, WeightsUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
