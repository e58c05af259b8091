"""benchmarks/ratios.py reads every kind of benchmark that `pytest benchmarks` writes."""
import json
import subprocess
import sys
from pathlib import Path

RATIOS = Path(__file__).resolve().parent.parent / "benchmarks" / "ratios.py"


def bench(name, group, median):
    return {"name": name, "group": group, "stats": {"median": median}}


def test_ratios_prints_kernels_against_wsis_and_settings_on_their_own(tmp_path):
    runs = {"benchmarks": [
        bench("test_nms[cpu-wsis-2000]", "nms 2000 boxes [cpu]", 0.001),
        bench("test_nms[cpu-torchvision-2000]", "nms 2000 boxes [cpu]", 0.012),
        bench("test_train_iteration[cpu-cpu_default]", "train iteration, 2 images [cpu]", 0.7),
        bench("test_probe_efficientnet_lite0[imagenet]", "classifier probe, 60 iterations [cpu]", 8.2),
    ]}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(runs))
    out = subprocess.run([sys.executable, str(RATIOS), str(tmp_path / "run.json")], capture_output=True, text=True, check=True).stdout
    assert "| nms 2000 boxes [cpu] | 1.00 ms | torchvision: 12.00 ms | **12.0x** |" in out
    assert "| train iteration, 2 images [cpu] | cpu_default | 700.00 ms |" in out
    assert "| classifier probe, 60 iterations [cpu] | imagenet | 8.20 s |" in out


def test_ratios_names_a_file_without_timings(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"benchmarks": []}))
    out = subprocess.run([sys.executable, str(RATIOS), str(tmp_path / "run.json")], capture_output=True, text=True)
    assert out.returncode != 0 and "--benchmark-disable" in out.stderr
