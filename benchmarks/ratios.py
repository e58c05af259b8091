"""Markdown table of a `pytest benchmarks --benchmark-json=FILE` run: per group, each
implementation's median and how many times slower it is than wsis (>1: wsis is faster).

    python benchmarks/ratios.py FILE
"""
import json
import re
import sys
from collections import defaultdict


def impl_of(name: str) -> str:
    params = re.search(r"\[(.*)\]", name).group(1).split("-")
    return next(p for p in params if p in ("wsis", "torchvision", "reference", "numpy"))


def table(path: str) -> str:
    runs = json.load(open(path))
    groups = defaultdict(dict)
    for b in runs["benchmarks"]:
        groups[b["group"]][impl_of(b["name"])] = b["stats"]["median"]
    rows = ["| benchmark | wsis | other | other / wsis |", "|---|---|---|---|"]
    for group in sorted(groups):
        times = groups[group]
        ours = times.get("wsis")
        for impl, t in sorted(times.items()):
            if impl != "wsis" and ours:
                rows.append(f"| {group} | {fmt(ours)} | {impl}: {fmt(t)} | **{t / ours:.1f}x** |")
    return "\n".join(rows)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(table(sys.argv[1]))
