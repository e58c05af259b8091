"""torchrun set-up: one process per GPU (NCCL) or per CPU worker (gloo)."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: str) -> World:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def cleanup(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def device_kind(name: str) -> str:
    """`auto` resolved: cuda where torch sees a GPU, else cpu."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pick_device(name: str, world: World) -> torch.device:
    name = device_kind(name)
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device=cuda but torch finds no CUDA device; use device=cpu")
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def set_deterministic(on: bool) -> None:
    """`torch.use_deterministic_algorithms`, our kernels included (roi_pool's backward then avoids
    atomics on CUDA); cuBLAS needs its workspace fixed for it. CPU runs repeat without it."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
