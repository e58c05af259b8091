"""python -m wsis.experiments [--table 3 4 6] [--seeds 0 1 2] [--out experiments] [key=value ...]

Trains and evaluates the rows of the paper's ablation tables on the data of the config (the
synthetic set by default), for several seeds, and writes a Markdown table of mean ± standard
deviation (`results.md`) and the raw numbers (`results.json`) into `--out`. Each run is a normal
run folder (`<out>/runs/<row's overrides>/seed<S>`, shared by rows that are the same model);
runs whose `metrics.json` exists are not redone and a stopped run is resumed, so an interrupted
sweep continues where it stopped.
"""
import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

from . import config as config_lib
from . import train
from .engine.run_folder import RunFolder

# Table 3: the modules; Table 4: the IMG variants (on the full model); Table 6: the regressor.
TABLES: Dict[str, Dict[str, List[str]]] = {
    "3": {
        "Detector only (boxes as masks)": ["model.img=false", "model.seg=false", "model.regressor=none"],
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
            cells = []
            for col in COLUMNS:
                v = [r[col] for r in runs]
                mean = sum(v) / len(v)
                sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
                cells.append(f"{mean:.1f} ± {sd:.1f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", f"({len(next(iter(rows.values())))} seeds a row)", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsis.experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", nargs="+", default=["3", "4", "6"], choices=sorted(TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("experiments"))
    parser.add_argument("--config", type=Path, help="base config (default: the CPU default)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every run")
    args = parser.parse_args(argv)
    config_lib.load(args.config, args.overrides)  # fail early on a bad key
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
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m wsis.experiments " + " ".join(
        ["--table", *args.table, "--seeds", *map(str, args.seeds), *(["--config", str(args.config)] if args.config else []), *args.overrides]
    )
    (args.out / "results.md").write_text(f"`{command}`\n\n{text}")
    (args.out / "results.json").write_text(json.dumps({"command": command, "results": results}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
