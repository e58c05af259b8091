"""What produced a run: versions, commit, build, threads and hardware (in the spirit of detectron2's
`collect_env`). `train` writes it to the run folder as `env.json`, prints its short form, and on
`--resume` names what differs from the run's original record."""
import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

import wsis

from ..model.precision import cpu_has_native_bf16, cpuinfo_field
from . import allocator

# Pillow draws the synthetic set: another version may draw other shapes
PACKAGES = ("torch", "torchvision", "timm", "numpy", "opencv", "pycocotools", "pillow")
_DISTRIBUTIONS = {"opencv": ("opencv-contrib-python-headless", "opencv-contrib-python", "opencv-python-headless",
                             "opencv-python")}  # fmt: skip
# Keys that differ between a run and its resume by design.
_PER_PROCESS = ("argv",)


def _version(name: str) -> Optional[str]:
    if name == "torch":
        return torch.__version__
    for dist in _DISTRIBUTIONS.get(name, (name,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _git(*args: str) -> Optional[str]:
    """A git command in the package's source tree; None outside a checkout or without git."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(wsis.__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_name() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def _c_build() -> Dict[str, Any]:
    record = Path(wsis.__file__).with_name("_C_build.json")
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return {}


def collect(seed: int, device: torch.device, argv: Optional[List[str]] = None) -> Dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    build = _c_build()
    env: Dict[str, Any] = {
        "wsis": wsis.__version__,
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        **{name: _version(name) for name in PACKAGES},
        "wsis_C_torch": build.get("torch"),
        "wsis_C_cuda_kernels": build.get("cuda_kernels"),
        "threads": torch.get_num_threads(),
        "malloc": allocator.state(),
        "cpu": _cpu_name(),
        "cpu_bf16": cpu_has_native_bf16(),  # decides model.frame_dtype=auto on the CPU
        "device": str(device),
        "cuda": torch.version.cuda,
        "gpu": None,
        "cuda_driver": None,
        "seed": seed,
        "argv": list(sys.argv if argv is None else argv),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda_driver"] = _cuda_driver()
    return env


def _cuda_driver() -> Optional[str]:
    """The NVIDIA driver's version, from nvidia-smi where it is installed."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def short(env: Dict[str, Any]) -> str:
    """One line for the start of a run."""
    commit = (env["git_commit"] or "unknown")[:10] + ("+dirty" if env["git_dirty"] else "")
    where = env["gpu"] or env["cpu"]
    return (f"wsis {env['wsis']} ({commit}), torch {env['torch']}, timm {env['timm']}, numpy {env['numpy']}, "
            f"{env['threads']} threads on {where}, seed {env['seed']}")  # fmt: skip


def differences(original: Dict[str, Any], now: Dict[str, Any]) -> List[str]:
    """`key: before -> now` for each recorded fact that changed (the command line excepted: a resume has its own)."""
    keys = [k for k in original if k not in _PER_PROCESS] + [k for k in now if k not in original]
    return [f"{k}: {original.get(k)!r} -> {now.get(k)!r}" for k in keys if original.get(k) != now.get(k)]


def write(env: Dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(env, indent=1) + "\n")


def read(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
