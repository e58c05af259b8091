"""python -m wsis.experiments: every row trained and evaluated, shared runs, a table, resumable."""
import json
import os

import pytest
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


def _metrics(own, segments, corloc_per_class):
    classes = {c: v for c, v in corloc_per_class.items()}
    return {"mAP@0.25": own + 10, "mAP@0.5": own, "mAP@0.75": own - 30, "ABO": 60.0, "det_mAP@0.5": own + 5,
            "CorLoc": sum(classes.values()) / len(classes),
            "per_class": {"CorLoc": classes, "mAP@0.5": {c: own for c in classes}},
            "postprocessed": {"mAP@0.5": segments, "mAP@0.75": segments - 30,
                              "per_class": {"mAP@0.5": {c: segments for c in classes}}}}  # fmt: skip


def test_robustness_summary_names_the_worst_run_and_each_collapse():
    from wsis import robustness

    runs = {"bf16/seed0": _metrics(70.0, 75.0, {"ring": 9.1, "star": 90.0}),
            "fp32/seed0": _metrics(80.0, 81.0, {"ring": 97.7, "star": 85.0}),
            "bf16/seed1": _metrics(75.0, 78.0, {"ring": 49.9, "star": 50.0})}  # fmt: skip
    s = robustness.summarise_row(runs)
    assert s["figures"]["mAP^r@0.5"]["mean"] == 75.0 and s["figures"]["mAP^r@0.5"]["worst"] == 70.0
    assert s["figures"]["mAP^r@0.5"]["spread"] == 10.0 and abs(s["figures"]["mAP^r@0.5"]["sd"] - 5.0) < 1e-9
    assert s["figures"]["mAP^r@0.5 with segments"]["worst"] == 75.0
    assert s["classes"]["ring"]["CorLoc"] == {"worst": 9.1, "run": "bf16/seed0", "mean": (9.1 + 97.7 + 49.9) / 3}
    assert s["classes"]["ring"]["collapsed in"] == ["bf16/seed0", "bf16/seed1"]  # under 50, and 49.9 is under
    assert s["classes"]["star"]["collapsed in"] == []  # 50 itself is not a collapse
    assert s["classes"]["star"]["with segments"]["run"] == "bf16/seed0"
    text = robustness.table({"full": s, "detector_only": robustness.summarise_row({"bf16/seed0": _metrics(40.0, 77.0, {"ring": 95.0, "star": 90.0})})})
    assert "| ring | 9.1 (bf16/seed0) | 70.0 (bf16/seed0) | 75.0 (bf16/seed0) | 2 of 3 |" in text
    assert "Runs with a collapsed class: 2 of 3 (bf16/seed0, bf16/seed1)" in text
    assert "| mAP^r@0.5 | +35.0 | +30.0 |" in text  # Table 3: full minus Detector only, mean and worst run


def test_a_robustness_grid_trains_each_variant_in_its_own_process(tiny_root, tmp_path, capsys):
    out = tmp_path / "grid"
    args = ["--study", "robustness", "--seeds", "0", "--variants", "bf16", "fp32", "--jobs", "2", "--out", str(out),
            f"data.root={tiny_root}", "data.scales=[96]", "data.max_boxes=30", "model.backbone.weights=none",
            "model.img_dim=8", "model.seg_dim=8", "model.regressor_dim=8", "solver.max_iter=2", "test.scales=[96]",
            "test.flip=false"]  # fmt: skip
    experiments.main(args)
    for variant, dtype in (("bf16", "bfloat16"), ("fp32", "same")):
        folder = out / "runs" / "full" / variant / "seed0"
        assert f"frame_dtype: {dtype}" in (folder / "config.yaml").read_text()
        assert json.loads((folder / "env.json").read_text())["threads"] == max(1, (os.cpu_count() or 1) // 2)
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["full"]["runs"] == ["bf16/seed0", "fp32/seed0"]
    assert results["command"].endswith("--study robustness --rows full --variants bf16 fp32 --jobs 2 --seeds 0")
    assert results["command"].startswith("python -m wsis.experiments data.root=")  # overrides first: re-runnable
    assert "### full (2 runs)" in (out / "results.md").read_text()
    stamp = (out / "runs" / "full" / "fp32" / "seed0" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    experiments.main(args)  # done runs are not trained again
    assert "2 runs, 2 already done" in capsys.readouterr().out
    assert (out / "runs" / "full" / "fp32" / "seed0" / "metrics.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit, match="holds a run of another config"):  # another override, the same --out
        experiments.main([*args, "solver.max_iter=3"])
    config = out / "runs" / "full" / "bf16" / "seed0" / "config.yaml"
    config.write_text(config.read_text().replace("  seg_res3: true\n", ""))  # as written before the key
    with pytest.raises(SystemExit, match="holds a run of another config"):  # its head read res5 alone
        experiments.main(args)


def test_a_failed_grid_run_is_named_with_its_log(tiny_root, tmp_path):
    out = tmp_path / "grid"
    with pytest.raises(SystemExit, match="full/fp32/seed0"):
        experiments.main(["--study", "robustness", "--seeds", "0", "--variants", "fp32", "--out", str(out),
                          "data.root=" + str(tmp_path / "missing"), "model.backbone.weights=none"])  # fmt: skip
    assert (out / "runs" / "full" / "fp32" / "seed0.log").read_text().strip()
