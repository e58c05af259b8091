"""The build record: wsis._C says which torch it was compiled against, and refuses any other."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import wsis
from wsis.ops._library import check_build_record

PACKAGE = Path(wsis.__file__).parent


def test_the_installed_kernels_were_built_against_this_torch():
    record = json.loads((PACKAGE / "_C_build.json").read_text())
    assert record["torch"] == torch.__version__
    assert record["cuda_kernels"] == torch._C._dispatch_has_kernel_for_dispatch_key("wsis::nms", "CUDA")


def test_another_torch_is_an_error_naming_both_versions_and_the_rebuild(tmp_path):
    record = tmp_path / "_C_build.json"
    record.write_text(json.dumps({"torch": "2.0.0+cpu", "cuda_kernels": False}))
    with pytest.raises(ImportError, match=r"compiled against torch 2\.0\.0\+cpu, but torch 2\.9\.9 is installed") as e:
        check_build_record(record, "2.9.9")
    assert "pip install --no-build-isolation -e ." in str(e.value)
    check_build_record(record, "2.0.0+cpu")  # the same torch passes


@pytest.mark.parametrize("content", [None, "not json", '{"cuda_kernels": false}'])
def test_a_missing_or_unreadable_record_is_an_error(tmp_path, content):
    record = tmp_path / "_C_build.json"
    if content is not None:
        record.write_text(content)
    with pytest.raises(ImportError, match="build record") as e:
        check_build_record(record, torch.__version__)
    assert "pip install --no-build-isolation -e ." in str(e.value)


def test_importing_kernels_built_for_another_torch_fails_cleanly(tmp_path):
    """A copy of the package whose record names another torch: `import wsis.ops` is an ImportError
    with the message, in a fresh interpreter, before the extension is loaded."""
    shutil.copytree(PACKAGE, tmp_path / "wsis", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "wsis" / "_C_build.json").write_text(json.dumps({"torch": "1.0.0", "cuda_kernels": False}))
    out = subprocess.run([sys.executable, "-c", "import wsis.ops"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert f"compiled against torch 1.0.0, but torch {torch.__version__} is installed" in out.stderr
    assert "ImportError" in out.stderr.splitlines()[-1]
