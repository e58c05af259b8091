"""What the trainer does besides a step, each at its own period (detectron2's hooks): log, show
progress, checkpoint, evaluate. A hook sees the trainer after each step and at the end."""
import json
from typing import Callable, Dict, Optional

from ..progress import Progress
from ..visualize import save_curves
from .distributed import barrier
from .run_folder import RunFolder


class Hook:
    def after_step(self, trainer, record: Dict[str, float]) -> None:
        """After iteration `trainer.iteration` (1-based: the number of steps done); `record` holds its losses."""

    def after_train(self, trainer) -> None:
        """At the end of `train`, also when it stops on an error."""


def due(iteration: int, period: int, max_iter: int) -> bool:
    """At every `period`-th iteration and at the last one."""
    return iteration % period == 0 or iteration == max_iter


def record_eval(run: RunFolder, iteration: int, map50: float) -> None:
    """One point of the val curve: a line in the run's log.jsonl, and the curves redrawn."""
    with run.log.open("a") as log:
        log.write(json.dumps({"iteration": iteration, "val_mAP@0.5": map50}) + "\n")
    save_curves(run.log, run.curves)


class LogHook(Hook):
    """One JSON line of losses, lr and seconds every `period` iterations into log.jsonl; the curves
    drawn at the end (main process only)."""

    def __init__(self, run: RunFolder, period: int, max_iter: int):
        self.run, self.period, self.max_iter = run, period, max_iter
        self.file = run.log.open("a")

    def after_step(self, trainer, record):
        if due(trainer.iteration, self.period, self.max_iter):
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def after_train(self, trainer):
        self.file.close()
        save_curves(self.run.log, self.run.curves)


class ProgressHook(Hook):
    def __init__(self, max_iter: int, start: int):
        self.bar = Progress(max_iter, "train", start=start)

    def after_step(self, trainer, record):
        losses = " ".join(f"{k} {record[k]:.3f}" for k in trainer.loss_names)
        self.bar.update(trainer.iteration, f"{losses} lr {record['lr']:.2g}")


class CheckpointHook(Hook):
    def __init__(self, period: int, max_iter: int):
        self.period, self.max_iter = period, max_iter

    def after_step(self, trainer, record):
        if due(trainer.iteration, self.period, self.max_iter):
            trainer.save()


class EvalHook(Hook):
    """`evaluate(model, iteration)` every `period` iterations before the last (the final evaluation
    is the caller's, with the same function); its mAP^r@0.5 goes into the log and the curves. The
    main process evaluates, the others wait."""

    def __init__(self, run: RunFolder, period: int, max_iter: int, evaluate: Callable[..., float]):
        self.run, self.period, self.max_iter, self.evaluate = run, period, max_iter, evaluate

    def after_step(self, trainer, record):
        if not self.period or trainer.iteration % self.period or trainer.iteration >= self.max_iter:
            return
        if trainer.world.main:
            trainer.model.eval()
            map50 = self.evaluate(trainer.model, trainer.iteration)
            trainer.model.train()
            record_eval(self.run, trainer.iteration, map50)
        barrier(trainer.world)


def default_hooks(trainer, evaluate: Optional[Callable[..., float]] = None):
    """Log, progress and checkpoints on the main process, in that order, then the periodic evaluation."""
    s = trainer.cfg.solver
    hooks = []
    if trainer.world.main:
        hooks += [LogHook(trainer.run, s.log_period, s.max_iter), ProgressHook(s.max_iter, trainer.iteration),
                  CheckpointHook(s.checkpoint_period, s.max_iter)]  # fmt: skip
    if evaluate is not None:
        hooks.append(EvalHook(trainer.run, s.eval_period, s.max_iter, evaluate))
    return hooks
