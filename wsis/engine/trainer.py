"""The training loop as a step plus hooks (docs/DESIGN.md §3): the optimizer and its schedule, atomic
checkpoints, exact resume, DDP; logging, progress, checkpoints and evaluation are hooks."""
import math
import signal
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from .. import config as config_lib
from ..config import Config
from ..data.loader import Batch, TrainDataset, collate
from ..model import CommunityNet
from ..model.losses import COMMUNITY_TERMS, community_weight
from . import checkpoint
from .distributed import World
from .hooks import Hook, default_hooks
from .run_folder import RunFolder
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


class Trainer:
    """`train` runs `run_step` on each batch, then every hook's `after_step`: the default hooks (log,
    progress, checkpoints, and the periodic evaluation `evaluate(model, iteration) -> mAP^r@0.5` if
    given), then those added to `hooks`."""

    def __init__(self, cfg: Config, run: RunFolder, root, world: World, device: torch.device,
                 evaluate: Optional[Callable[..., float]] = None):  # fmt: skip
        self.cfg, self.run, self.world, self.device = cfg, run, world, device
        self.data = TrainDataset(root, cfg.data, cfg.seed, segments=cfg.model.snap_pseudo_masks)
        self.classes = self.data.data.classes
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = CommunityNet(cfg.model, len(self.classes)).to_device(device)
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model)
        self.iteration = 0
        self.loss_names: List[str] = []
        self.evaluate = evaluate
        self.hooks: List[Hook] = []

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

    def save(self):
        if not self.world.main:
            return None
        state = self.state()
        path = self.run.checkpoint(self.iteration)
        checkpoint.save(state, path)
        checkpoint.save(state, self.run.last_checkpoint)
        return path

    def resume(self) -> None:
        path = self.run.last_checkpoint
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

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.solver.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def run_step(self, model: torch.nn.Module, batch: Batch) -> Dict[str, float]:
        """One iteration: forward, the NaN check, backward, the optimizer and schedule; its log record."""
        t_step = time.perf_counter()
        images = batch.images.to(self.device, non_blocking=True)
        rois = batch.rois.to(self.device, non_blocking=True)
        labels = batch.labels.to(self.device, non_blocking=True)
        counts = [len(x.boxes) for x in batch.samples]
        gen = iteration_generator(self.cfg.seed, self.iteration, self.world.rank)
        segments = [s.segments for s in batch.samples] if self.cfg.model.snap_pseudo_masks else None
        with self._autocast():
            losses, _ = model(images, rois, counts, labels, gen, segments)
        held = community_weight(self.iteration, self.cfg.solver.community_start)
        if held < 1:  # the community's warm start: weighted here, so log.jsonl shows the terms as they enter
            losses = {k: v * held if k in COMMUNITY_TERMS else v for k, v in losses.items()}
        total = sum(losses.values())
        if not math.isfinite(total.item()):
            parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            last = self.run.last_checkpoint
            where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise TrainingDiverged(f"loss is {total.item()} at iteration {self.iteration} ({parts}); "
                                   f"stopped without saving; {where}. Try a lower solver.lr.")  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.cfg.solver.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.solver.clip_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        self.loss_names = list(losses)
        return {"iteration": self.iteration, "lr": lr, "loss": total.item(), **{k: v.item() for k, v in losses.items()},
                "time": time.perf_counter() - t_step}  # fmt: skip

    def train(self, log=print):
        """Train to `solver.max_iter`; returns the last checkpoint. Ctrl-C and SIGTERM save one first."""
        model = self.model
        if self.world.size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.model, device_ids=ids)
        model.train()
        hooks = default_hooks(self, self.evaluate) + self.hooks
        interrupted = []
        previous = signal.signal(signal.SIGTERM, lambda *_: interrupted.append("SIGTERM"))
        try:
            t_data = time.perf_counter()
            for batch in self._loader():
                if interrupted:
                    raise KeyboardInterrupt
                data_time = time.perf_counter() - t_data
                record = self.run_step(model, batch)
                record["data_time"] = data_time
                for hook in hooks:
                    hook.after_step(self, record)
                t_data = time.perf_counter()
        except KeyboardInterrupt:
            path = self.save()
            if path:
                log(f"\ninterrupted at iteration {self.iteration}: saved {path}; continue with --resume {self.run.root}")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            for hook in hooks:
                hook.after_train(self)
        return self.run.last_checkpoint
