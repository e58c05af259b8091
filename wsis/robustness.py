"""The robustness study of `python -m wsis.experiments --study robustness`: one config trained over a
grid of seeds x numerical variants, and its outcome as a distribution (mean, worst run, spread) per
figure and per class.

A variant computes the same config another way (the frame pass in bfloat16 or float32, one thread
or two): a method whose outcome depends on such a difference, or on the seed, is fragile. Each run
is a subprocess `python -m wsis.train`, so that its thread count is its own and several can share
the cores (`--jobs`); each is a normal run folder, `<out>/runs/<row>/<variant>/seed<S>`, and one
whose `metrics.json` exists is not trained again (a stopped one is resumed).
"""
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import config as config_lib
from .engine.run_folder import RunFolder

COLLAPSE_CORLOC = 50.0  # a class collapses in a run when its CorLoc is below this


@dataclass(frozen=True)
class Variant:
    overrides: Sequence[str] = ()
    threads: Optional[int] = None  # None: the cores shared among --jobs


VARIANTS: Dict[str, Variant] = {
    "bf16": Variant(["model.frame_dtype=bfloat16"]),  # the frame pass in bfloat16 (auto's choice on AVX512-BF16/AMX)
    "fp32": Variant(["model.frame_dtype=same"]),  # ... and in float32
    "threads1": Variant([], 1),
    "threads2": Variant([], 2),
}
# The rows of Table 3 that a grid compares: the full model and its Detector only.
ROWS: Dict[str, List[str]] = {
    "full": [],
    "detector_only": ["model.img=false", "model.seg=false", "model.regressor=none"],
}
# (label, where in metrics.json): own masks at the top level, the post-processed ones beside them
FIGURES = [
    ("mAP^r@0.25", ("mAP@0.25",)), ("mAP^r@0.5", ("mAP@0.5",)), ("mAP^r@0.75", ("mAP@0.75",)), ("ABO", ("ABO",)),
    ("det mAP@0.5", ("det_mAP@0.5",)), ("CorLoc", ("CorLoc",)),
    ("mAP^r@0.5 with segments", ("postprocessed", "mAP@0.5")), ("mAP^r@0.75 with segments", ("postprocessed", "mAP@0.75")),
]  # fmt: skip


@dataclass(frozen=True)
class GridRun:
    row: str
    variant: str
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.row}/{self.variant}/seed{self.seed}"


def grid(out: Path, rows: Sequence[str], variants: Sequence[str], seeds: Sequence[int]) -> List[GridRun]:
    return [GridRun(r, v, s, out / "runs" / r / v / f"seed{s}") for r in rows for s in seeds for v in variants]


def _command(run: GridRun, config: Optional[Path], overrides: Sequence[str]) -> List[str]:
    cmd = [sys.executable, "-m", "wsis.train"]
    if RunFolder(run.folder).last_checkpoint.is_file():
        return cmd + ["--resume", str(run.folder)]
    if config is not None:
        cmd += ["--config", str(config)]
    variant = VARIANTS[run.variant]
    return cmd + [*overrides, *ROWS[run.row], *variant.overrides, f"seed={run.seed}", f"output_dir={run.folder}",
                  "evaluate=true"]  # fmt: skip


def check_reusable(run: GridRun, config: Optional[Path], overrides: Sequence[str]) -> None:
    saved = RunFolder(run.folder).config
    if not saved.is_file():
        return
    wanted = config_lib.load(config, [*overrides, *ROWS[run.row], *VARIANTS[run.variant].overrides,
                                      f"seed={run.seed}", f"output_dir={run.folder}", "evaluate=true"])  # fmt: skip
    if config_lib.load(saved, saved=True) != wanted:  # a key the run predates: what it was trained with
        raise ValueError(f"{run.folder} holds a run of another config than this study's (another key=value or "
                         f"--config into the same --out?): give the study its own --out")  # fmt: skip


def _threads(run: GridRun, jobs: int) -> int:
    return VARIANTS[run.variant].threads or max(1, (os.cpu_count() or 1) // jobs)


def _say(*args) -> None:
    print(*args, flush=True)  # a study runs for hours, often into a log file: each line as it happens


def train_grid(runs: List[GridRun], config: Optional[Path], overrides: Sequence[str], jobs: int = 1,
               say=_say) -> List[GridRun]:  # fmt: skip
    """Trains every run without metrics, `jobs` at a time; returns the runs that failed. A folder that
    holds a run of another config (another override into the same `--out`) is an error, not reused."""
    for run in runs:
        check_reusable(run, config, overrides)
    todo = [r for r in runs if not RunFolder(r.folder).metrics.is_file()]
    say(f"robustness grid: {len(runs)} runs, {len(runs) - len(todo)} already done, {jobs} at a time")
    running: Dict[GridRun, subprocess.Popen] = {}
    failed: List[GridRun] = []
    done = len(runs) - len(todo)
    while todo or running:
        while todo and len(running) < jobs:
            run = todo.pop(0)
            run.folder.parent.mkdir(parents=True, exist_ok=True)
            threads = _threads(run, jobs)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            log = open(run.folder.parent / f"seed{run.seed}.log", "a")
            running[run] = subprocess.Popen(_command(run, config, overrides), env=env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
            log.close()
            say(f"  started {run.name} ({threads} thread{'s' if threads > 1 else ''}; log {log.name})")
        time.sleep(0.2)
        for run, proc in list(running.items()):
            if proc.poll() is None:
                continue
            del running[run]
            done += 1
            if proc.returncode == 0 and RunFolder(run.folder).metrics.is_file():
                m = json.loads(RunFolder(run.folder).metrics.read_text())
                say(f"  [{done}/{len(runs)}] {run.name}: mAP^r@0.5 {m['mAP@0.5']:.1f}, det mAP {m['det_mAP@0.5']:.1f}, "
                    f"CorLoc {m['CorLoc']:.1f}")  # fmt: skip
            else:
                failed.append(run)
                say(f"  [{done}/{len(runs)}] {run.name}: failed (exit {proc.returncode}; see "
                    f"{run.folder.parent / f'seed{run.seed}.log'})")  # fmt: skip
    return failed


def _get(m: dict, path: Sequence[str]) -> Optional[float]:
    for key in path:
        if not isinstance(m, dict) or key not in m:
            return None
        m = m[key]
    return None if m is None or (isinstance(m, float) and math.isnan(m)) else float(m)


def stats(values: List[float]) -> Dict[str, float]:
    """Mean, worst (lowest), best, spread (best - worst) and sample standard deviation."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "worst": min(values), "best": max(values), "spread": max(values) - min(values), "sd": sd}


def summarise_row(metrics: Dict[str, dict]) -> dict:
    """`metrics`: run name -> its metrics.json. Per figure, the distribution over runs; per class, the
    worst run's CorLoc and mAP^r@0.5 (own and with segments) and the runs where it collapsed."""
    figures = {}
    for label, path in FIGURES:
        values = [v for v in (_get(m, path) for m in metrics.values()) if v is not None]
        if values:
            figures[label] = {**stats(values), "runs": len(values)}
    classes: Dict[str, dict] = {}
    first = next(iter(metrics.values()))
    for cls in first.get("per_class", {}).get("CorLoc", {}):
        entry: Dict[str, object] = {}
        for label, path in [("CorLoc", ("per_class", "CorLoc", cls)), ("mAP^r@0.5", ("per_class", "mAP@0.5", cls)),
                            ("with segments", ("postprocessed", "per_class", "mAP@0.5", cls))]:  # fmt: skip
            values = {name: v for name, m in metrics.items() if (v := _get(m, path)) is not None}
            if values:
                worst = min(values, key=values.get)
                entry[label] = {"worst": values[worst], "run": worst, "mean": sum(values.values()) / len(values)}
        entry["collapsed in"] = sorted(n for n, m in metrics.items()
                                       if (v := _get(m, ("per_class", "CorLoc", cls))) is not None and v < COLLAPSE_CORLOC)  # fmt: skip
        classes[cls] = entry
    return {"runs": sorted(metrics), "figures": figures, "classes": classes}


def table(summary: Dict[str, dict]) -> str:
    """Markdown: per row, the figures' distribution and the classes' worst runs; then Table 3 if both rows ran."""
    lines: List[str] = []
    for row, s in summary.items():
        n = len(s["runs"])
        lines += [f"### {row} ({n} runs)", "", "| figure | mean | worst run | spread (max - min) | SD |", "|---|---|---|---|---|"]
        for label, f in s["figures"].items():
            lines.append(f"| {label} | {f['mean']:.1f} | {f['worst']:.1f} | {f['spread']:.1f} | {f['sd']:.1f} |")
        lines += ["", "| class | worst CorLoc (run) | worst mAP^r@0.5 own (run) | worst with segments (run) | "
                      f"runs with CorLoc < {COLLAPSE_CORLOC:g} |", "|---|---|---|---|---|"]  # fmt: skip
        for cls, c in s["classes"].items():
            cells = [f"{c[k]['worst']:.1f} ({c[k]['run']})" if k in c else "–" for k in ("CorLoc", "mAP^r@0.5", "with segments")]
            lines.append(f"| {cls} | " + " | ".join(cells) + f" | {len(c['collapsed in'])} of {n} |")
        collapsed = sorted({r for c in s["classes"].values() for r in c["collapsed in"]})
        lines += ["", f"Runs with a collapsed class: {len(collapsed)} of {n}" + (f" ({', '.join(collapsed)})" if collapsed else ""), ""]
    if "full" in summary and "detector_only" in summary:
        full, det = summary["full"]["figures"], summary["detector_only"]["figures"]
        lines += ["### Table 3 on the grid: the full model minus Detector only", "",
                  "| figure | mean | worst run |", "|---|---|---|"]  # fmt: skip
        for label in ("mAP^r@0.5", "det mAP@0.5", "CorLoc", "mAP^r@0.5 with segments"):
            if label in full and label in det:
                lines.append(f"| {label} | {full[label]['mean'] - det[label]['mean']:+.1f} | "
                             f"{full[label]['worst'] - det[label]['worst']:+.1f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)
