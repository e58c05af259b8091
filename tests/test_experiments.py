"""python -m wsis.experiments: every row trained and evaluated, shared runs, a table, resumable."""
import json

from conftest import needs_timm
from wsis import experiments

needs_timm()


def test_a_sweep_writes_its_table_and_does_not_redo_runs(tiny_root, tmp_path, capsys):
    args = ["--table", "6", "--seeds", "0", "1", "--out", str(tmp_path / "exp"), f"data.root={tiny_root}",
            "data.scales=[96]", "data.max_boxes=30", "data.workers=0", "model.backbone.weights=none", "model.img_dim=8",
            "model.seg_dim=8", "model.regressor_dim=8", "solver.max_iter=1", "test.scales=[96]"]  # fmt: skip
    experiments.main(args)
    runs = sorted(p.name for p in (tmp_path / "exp" / "runs").iterdir())
    assert runs == ["full_model", "regressor=specific"]
    table = (tmp_path / "exp" / "results.md").read_text()
    assert "| class-agnostic regressor |" in table and "(2 seeds a row)" in table
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert len(results["results"]["6"]["class-specific regressor"]) == 2
    stamp = (tmp_path / "exp" / "runs" / "full_model" / "seed0" / "metrics.json").stat().st_mtime_ns
    experiments.main(args)  # everything is there: nothing is trained again
    assert (tmp_path / "exp" / "runs" / "full_model" / "seed0" / "metrics.json").stat().st_mtime_ns == stamp
