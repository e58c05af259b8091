"""python -m wsis.train [--config FILE] [--resume RUN_DIR] [key=value ...]

With no arguments: generate the synthetic data set and its proposals (once, cached), train the
CPU default config, evaluate on the val split, and print where everything went. Several
processes: `torchrun --nproc_per_node N -m wsis.train ...` (NCCL on GPUs, gloo on CPUs).
"""
import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

from . import config as config_lib
from .data.prepare import prepare
from .data.scan import scan
from .engine import distributed, environment
from .engine.trainer import Trainer, TrainingDiverged, record_eval
from .model.backbone import WeightsUnavailable, imagenet_state


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
            cfg = config_lib.load(args.resume / "config.yaml", args.overrides)
            cfg.output_dir = str(args.resume)
        else:
            cfg = config_lib.load(args.config, args.overrides)
    except (KeyError, ValueError, FileNotFoundError) as e:
        parser.error(str(e.args[0]) if isinstance(e, KeyError) else str(e))
    return cfg, args.resume


def record_environment(run_dir: Path, cfg: config_lib.Config, device, resume: Optional[Path], say) -> None:
    """`env.json` of a new run; on resume the original is kept and each fact that changed is named."""
    env = environment.collect(cfg.seed, device)
    say(f"environment: {environment.short(env)}")
    original = environment.read(run_dir / "env.json") if resume else None
    if original is None:
        environment.write(env, run_dir / "env.json")
        return
    for change in environment.differences(original, env):
        say(f"warning: resumed in another environment than the run began in: {change}")


def run(cfg: config_lib.Config, resume: Optional[Path] = None) -> Path:
    world = distributed.init(distributed.device_kind(cfg.device))
    device = distributed.pick_device(cfg.device, world)
    distributed.set_deterministic(cfg.deterministic)
    run_dir = Path(cfg.output_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    say = print if world.main else (lambda *a, **k: None)
    try:
        if world.main:
            # Unreachable weights fail here, in seconds, before a run folder exists.
            imagenet_state(cfg.model.backbone.name, cfg.model.backbone.weights)
            run_dir.mkdir(parents=True, exist_ok=True)
            if not resume and (run_dir / "checkpoints" / "last.pt").is_file():
                raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another output_dir")
            (run_dir / "config.yaml").write_text(config_lib.to_yaml(cfg))
            say(f"run folder: {run_dir.resolve()}  (device {device}, {world.size} process{'es' if world.size > 1 else ''})")
            record_environment(run_dir, cfg, device, resume, say)
            root = prepare(cfg.data, [cfg.data.train_split] + ([cfg.data.val_split] if cfg.evaluate else []))
            train_data = scan(root, cfg.data.train_split, cfg.data.proposal_mode, cfg.data.min_box)  # bad files stop here
            if cfg.evaluate:  # and those that would stop the evaluation at the end
                scan(root, cfg.data.val_split, cfg.data.proposal_mode, cfg.data.min_box, ground_truth=True)
            say(f"data: {root.resolve()}")
            if train_data.skipped:
                say(f"data: {train_data.skipped} images of {cfg.data.train_split} have no label (no non-crowd "
                    f"annotation) and are left out; {len(train_data)} remain")  # fmt: skip
        distributed.barrier(world)
        if not world.main:  # rank 0 made the data; the others only need its root
            root = prepare(cfg.data, [], progress=False)
        trainer = Trainer(cfg, run_dir, root, world, device)
        if resume:
            trainer.resume(run_dir / "checkpoints" / "last.pt")
            say(f"resumed at iteration {trainer.iteration}")
        last = trainer.train(log=say)
        say(f"checkpoint: {last.resolve()}")
        if cfg.evaluate and world.main:
            from .evaluate import evaluate_checkpoint

            metrics = evaluate_checkpoint(last, root, cfg.data.val_split, run_dir, cfg)
            record_eval(run_dir, cfg.solver.max_iter, metrics["mAP@0.5"])  # the last point of the curve
            say(f"metrics: {(run_dir / 'metrics.json').resolve()}  mAP@0.5 {metrics['mAP@0.5']:.1f}  "
                f"CorLoc {metrics['CorLoc']:.1f}")  # fmt: skip
        say(f"done: everything is in {run_dir.resolve()}")
        return run_dir
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
