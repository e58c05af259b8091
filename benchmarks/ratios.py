"""Markdown tables of a `pytest benchmarks --benchmark-json=FILE` run.

    python benchmarks/ratios.py FILE

Kernel benchmarks name their implementation (wsis, torchvision, reference, numpy): per group, each
other implementation's median and how many times slower it is than wsis (>1: wsis is faster).
The model and probe benchmarks name a setting instead (the CPU default, ImageNet or no weights):
per group, each setting's median.
"""
import json
import re
import sys
from collections import defaultdict
from typing import Optional

IMPLEMENTATIONS = ("wsis", "torchvision", "reference", "numpy")


def params_of(name: str) -> list:
    found = re.search(r"\[(.*)\]", name)
    return found.group(1).split("-") if found else []


def impl_of(name: str) -> Optional[str]:
    """The implementation a benchmark measures, or None for one that compares settings."""
    return next((p for p in params_of(name) if p in IMPLEMENTATIONS), None)


def table(path: str) -> str:
    try:
        runs = json.load(open(path))
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: not a pytest-benchmark JSON file ({e})")
    if not runs.get("benchmarks"):
        sys.exit(f"{path} holds no timings (was it written with --benchmark-disable?)")
    kernels, settings = defaultdict(dict), defaultdict(dict)
    for b in runs["benchmarks"]:
        impl = impl_of(b["name"])
        if impl is None:
            setting = "-".join(p for p in params_of(b["name"]) if p not in ("cpu", "cuda")) or b["name"]
            settings[b["group"]][setting] = b["stats"]["median"]
        else:
            kernels[b["group"]][impl] = b["stats"]["median"]
    out = []
    if kernels:
        out += ["| benchmark | wsis | other | other / wsis |", "|---|---|---|---|"]
        for group in sorted(kernels):
            times = kernels[group]
            ours = times.get("wsis")
            for impl, t in sorted(times.items()):
                if impl != "wsis" and ours:
                    out.append(f"| {group} | {fmt(ours)} | {impl}: {fmt(t)} | **{t / ours:.1f}x** |")
    if settings:
        out += ([""] if out else []) + ["| benchmark | setting | median |", "|---|---|---|"]
        for group in sorted(settings):
            for setting, t in sorted(settings[group].items()):
                out.append(f"| {group} | {setting} | {fmt(t)} |")
    return "\n".join(out)


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(table(sys.argv[1]))
