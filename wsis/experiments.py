"""python -m wsis.experiments [--study tables|robustness] [--seeds ...] [--out DIR] [key=value ...]

Two studies on the data of the config (the synthetic set by default), each writing a Markdown table
(`results.md`) and the raw numbers (`results.json`) into `--out`:
- `tables` (the default; `--table 3 4 6`): the rows of the paper's ablation tables, several seeds
  each, as mean ± standard deviation. Each run is a run folder `<out>/runs/<row's overrides>/seed<S>`,
  shared by rows that are the same model.
- `robustness` (`--rows full detector_only --variants bf16 fp32 --jobs N`): a grid of seeds x
  numerical variants, and per figure the mean, the worst run and the spread; per class the worst
  run and the runs where the class collapsed (CorLoc < 50); Table 3 on the grid (wsis.robustness).
Runs whose `metrics.json` exists are not redone and a stopped run is resumed, so an interrupted
study continues where it stopped.
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional

from . import config as config_lib
from . import robustness, train
from .engine.run_folder import RunFolder

# Table 3: the modules; Table 4: the IMG variants (on the full model); Table 6: the regressor.
TABLES: Dict[str, Dict[str, List[str]]] = {
    "3": {
        "Detector only (boxes as masks)": robustness.ROWS["detector_only"],
        "+IMG": ["model.seg=false", "model.regressor=none"],
        "+IMG+IS": ["model.regressor=none"],
        "+REG+IMG+IS": [],
    },
    "4": {
        "plain CAM": ["model.img_background=false", "model.img_weighted_gap=false", "model.img_log_smoothing=false"],
        "+background": ["model.img_weighted_gap=false", "model.img_log_smoothing=false"],
        "+background+weighted GAP": ["model.img_log_smoothing=false"],
        "+background+weighted GAP+smoothing": [],
    },
    "6": {
        "class-specific regressor": ["model.regressor=specific"],
        "class-agnostic regressor": [],
    },
}
COLUMNS = ["mAP@0.25", "mAP@0.5", "mAP@0.75", "ABO", "det_mAP@0.5", "CorLoc"]


def _run_name(row: List[str]) -> str:
    """A folder name for a row's overrides: rows with the same overrides (the full model appears in
    every table) share their runs."""
    name = "-".join(sorted(o.removeprefix("model.") for o in row)) or "full_model"
    return "".join(c if c.isalnum() or c in "-=_" else "_" for c in name)


def run_row(base: List[str], config: Optional[Path], row: List[str], seed: int, out: Path) -> Dict[str, float]:
    run = RunFolder(out)
    if not run.metrics.is_file():
        if run.last_checkpoint.is_file():
            train.run(config_lib.load(run.config), resume=out)
        else:
            cfg = config_lib.load(config, [*base, *row, f"seed={seed}", f"output_dir={out}", "evaluate=true"])
            train.run(cfg)
    return json.loads(run.metrics.read_text())


def summarise(results: Dict[str, Dict[str, List[Dict[str, float]]]]) -> str:
    lines = []
    for table, rows in results.items():
        lines += [f"Table {table}", "", "| row | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for name, runs in rows.items():
            cells = [f"{s['mean']:.1f} ± {s['sd']:.1f}" for s in (robustness.stats([r[col] for r in runs]) for col in COLUMNS)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"({len(next(iter(rows.values())))} seeds a row)", ""]
    return "\n".join(lines)


def _command_line(args) -> str:
    # the overrides first: after --seeds (nargs="+") they would be read as seeds
    parts = ["python -m wsis.experiments", *args.overrides, "--study", args.study]
    if args.study == "tables":
        parts += ["--table", *args.table]
    else:
        parts += ["--rows", *args.rows, "--variants", *args.variants, "--jobs", str(args.jobs)]
    parts += ["--seeds", *map(str, args.seeds), *(["--config", str(args.config)] if args.config else [])]
    return " ".join(parts)


def study_tables(args) -> str:
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {}
    for table in args.table:
        results[table] = {}
        for name, row in TABLES[table].items():
            results[table][name] = [
                run_row(args.overrides, args.config, row, seed, args.out / "runs" / _run_name(row) / f"seed{seed}")
                for seed in args.seeds
            ]
            print(f"table {table} / {name}: done ({len(args.seeds)} seeds)")
    text = summarise(results)
    _write(args, text, results)
    return text


def study_robustness(args) -> str:
    runs = robustness.grid(args.out, args.rows, args.variants, args.seeds)
    try:
        failed = robustness.train_grid(runs, args.config, args.overrides, jobs=args.jobs)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if failed:
        raise SystemExit("error: these runs failed (their logs are beside their folders): " + ", ".join(r.name for r in failed))
    summary = {
        row: robustness.summarise_row({f"{r.variant}/seed{r.seed}": json.loads(RunFolder(r.folder).metrics.read_text())
                                       for r in runs if r.row == row})
        for row in args.rows
    }  # fmt: skip
    text = robustness.table(summary)
    _write(args, text, summary)
    return text


def _write(args, text: str, results) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    command = _command_line(args)
    (args.out / "results.md").write_text(f"`{command}`\n\n{text}")
    (args.out / "results.json").write_text(json.dumps({"command": command, "results": results}, indent=1))


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", choices=["tables", "robustness"], default="tables")
    parser.add_argument("--table", nargs="+", default=["3", "4", "6"], choices=sorted(TABLES), help="tables: which")
    parser.add_argument("--rows", nargs="+", default=["full"], choices=list(robustness.ROWS),
                        help="robustness: the models on the grid (Table 3's first and last rows)")
    parser.add_argument("--variants", nargs="+", default=["bf16", "fp32"], choices=list(robustness.VARIANTS),
                        help="robustness: the numerical variants (the frame pass in bfloat16 / float32, 1 / 2 threads)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="robustness: runs at once, the cores shared among them (two at 2 threads each on 2 cores take ~3x longer)")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2 (tables), 0 1 2 3 (robustness)")
    parser.add_argument("--out", type=Path, default=Path("experiments"))
    parser.add_argument("--config", type=Path, help="base config (default: the CPU default)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every run")
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = [0, 1, 2] if args.study == "tables" else [0, 1, 2, 3]
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    config_lib.load(args.config, args.overrides)  # fail early on a bad key
    print(study_tables(args) if args.study == "tables" else study_robustness(args))


if __name__ == "__main__":
    main()
