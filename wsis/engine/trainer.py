"""The training loop: SGD with a step schedule, atomic checkpoints, exact resume, logs, DDP."""
import json
import math
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import config as config_lib
from ..config import Config
from ..data.loader import TrainDataset, collate
from ..model import CommunityNet
from ..progress import Progress
from . import checkpoint
from ..visualize import save_curves
from .distributed import World, barrier
from .sampler import IterationBatches


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""


class StepSchedule:
    """lr factor at an iteration: linear warm-up, then times gamma at each step (picklable)."""

    def __init__(self, steps, gamma: float, warmup_iters: int, warmup_factor: float):
        self.steps, self.gamma, self.warmup_iters, self.warmup_factor = tuple(steps), gamma, warmup_iters, warmup_factor

    def __call__(self, iteration: int) -> float:
        factor = self.gamma ** sum(iteration >= s for s in self.steps)
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            factor *= self.warmup_factor * (1 - alpha) + alpha
        return factor


def build_optimizer(cfg: Config, model: torch.nn.Module):
    s = cfg.solver
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on norms and biases
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if s.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=s.lr)
    else:
        opt = torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, StepSchedule(s.steps, s.gamma, s.warmup_iters, s.warmup_factor))
    return opt, sched


def iteration_generator(seed: int, iteration: int, rank: int) -> torch.Generator:
    """The model's random draws (background samples) of one iteration: a function of the iteration."""
    return torch.Generator().manual_seed((seed * 1_000_003 + iteration) * 1_009 + rank)


def draw_curves(run_dir: Path) -> None:
    save_curves(run_dir / "log.jsonl", run_dir / "pictures" / "curves.png")


def record_eval(run_dir: Path, iteration: int, map50: float) -> None:
    """One point of the val curve: a line in the run's log.jsonl, and the curves redrawn."""
    with (run_dir / "log.jsonl").open("a") as log:  # the training loop flushes its own lines as it writes them
        log.write(json.dumps({"iteration": iteration, "val_mAP@0.5": map50}) + "\n")
    draw_curves(run_dir)


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, root: Path, world: World, device: torch.device):
        self.cfg, self.run_dir, self.root, self.world, self.device = cfg, Path(run_dir), Path(root), world, device
        self.data = TrainDataset(root, cfg.data.train_split, cfg.data.scales, cfg.data.max_size, cfg.data.flip,
                                 cfg.data.proposal_mode, cfg.data.min_box, cfg.data.max_boxes, cfg.seed)  # fmt: skip
        self.classes = self.data.data.classes
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = CommunityNet(cfg.model, len(self.classes)).to(device)
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.iteration = 0
        self.ckpt_dir = self.run_dir / "checkpoints"

    # ---- checkpoints ---------------------------------------------------------------------------
    def state(self) -> Dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "rng": checkpoint.rng_state(),
            "config": config_lib.to_dict(self.cfg),
            "classes": list(self.classes),
        }

    def save(self) -> Optional[Path]:
        if not self.world.main:
            return None
        state = self.state()
        path = self.ckpt_dir / f"model_{self.iteration:07d}.pt"
        checkpoint.save(state, path)
        checkpoint.save(state, self.ckpt_dir / "last.pt")
        return path

    def resume(self, path: Path) -> None:
        state = checkpoint.load(path)
        checkpoint.check_fits(self.model, state["model"], f"checkpoint {path}")
        if list(state.get("classes", self.classes)) != list(self.classes):
            raise ValueError(f"checkpoint {path} was trained on classes {state['classes']}, the data has {list(self.classes)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = state["iteration"]
        checkpoint.set_rng_state(state["rng"])

    # ---- the loop ------------------------------------------------------------------------------
    def _loader(self):
        s = self.cfg.solver
        batches = IterationBatches(len(self.data), s.batch_size, self.cfg.seed, self.iteration, s.max_iter,
                                   self.world.rank, self.world.size)  # fmt: skip
        workers = self.cfg.data.workers
        return torch.utils.data.DataLoader(self.data, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                                           persistent_workers=False, prefetch_factor=2 if workers else None)  # fmt: skip

    def evaluate(self) -> None:
        """mAP^r@0.5 on the val split into the log and the curves (the main process; the others wait)."""
        if self.world.main:
            from ..evaluate import evaluate_model

            self.model.eval()
            m, _, _ = evaluate_model(self.model, self.cfg, self.root, self.cfg.data.val_split, None, self.device,
                                  what=f"eval@{self.iteration}")  # fmt: skip
            self.model.train()
            record_eval(self.run_dir, self.iteration, m["mAP@0.5"])
        barrier(self.world)

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.solver.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def train(self, log=print) -> Path:
        cfg, s = self.cfg, self.cfg.solver
        model = self.model
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.model, device_ids=ids)
        model.train()
        log_file = (self.run_dir / "log.jsonl").open("a") if self.world.main else None
        bar = Progress(s.max_iter, "train", start=self.iteration, enabled=self.world.main)
        last_good = self.ckpt_dir / "last.pt"
        interrupted = []
        previous = signal.signal(signal.SIGTERM, lambda *_: interrupted.append("SIGTERM"))
        try:
            t_data = time.perf_counter()
            for batch in self._loader():
                if interrupted:
                    raise KeyboardInterrupt
                images = batch.images.to(self.device, non_blocking=True)
                rois = batch.rois.to(self.device, non_blocking=True)
                labels = batch.labels.to(self.device, non_blocking=True)
                counts = [len(x.boxes) for x in batch.samples]
                t_step = time.perf_counter()
                gen = iteration_generator(cfg.seed, self.iteration, self.world.rank)
                with self._autocast():
                    losses, _ = model(images, rois, counts, labels, gen)
                total = sum(losses.values())
                if not math.isfinite(total.item()):
                    parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                    where = f"the last good checkpoint is {last_good}" if last_good.is_file() else "no checkpoint was written yet"
                    raise TrainingDiverged(f"loss is {total.item()} at iteration {self.iteration} ({parts}); "
                                           f"stopped without saving; {where}. Try a lower solver.lr.")  # fmt: skip
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                if s.clip_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_grad_norm)
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
                self.iteration += 1
                now = time.perf_counter()
                record = {"iteration": self.iteration, "lr": lr, "loss": total.item(),
                          **{k: v.item() for k, v in losses.items()},
                          "time": now - t_step, "data_time": t_step - t_data}  # fmt: skip
                if log_file and (self.iteration % s.log_period == 0 or self.iteration == s.max_iter):
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                bar.update(self.iteration, " ".join(f"{k} {v.item():.3f}" for k, v in losses.items()) + f" lr {lr:.2g}")
                if self.iteration % s.checkpoint_period == 0 or self.iteration == s.max_iter:
                    self.save()
                if s.eval_period and self.iteration % s.eval_period == 0 and self.iteration < s.max_iter:
                    self.evaluate()
                t_data = time.perf_counter()
        except KeyboardInterrupt:
            path = self.save()
            if path:
                log(f"\ninterrupted at iteration {self.iteration}: saved {path}; continue with --resume {self.run_dir}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            if log_file:
                log_file.close()
                draw_curves(self.run_dir)
        return self.ckpt_dir / "last.pt"
