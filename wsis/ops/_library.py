"""Loads the compiled kernels once; every op module imports `ops` from here.

setup.py writes `wsis/_C_build.json` beside the extension with the torch it was compiled
against. A C++ extension only loads under that exact torch: under another one the import fails
with an undefined symbol, or worse loads and crashes later. So the record is checked first.
"""
import importlib.util
import json
from pathlib import Path

import torch

REBUILD = (
    "Rebuild it against the torch you run: `pip install --no-build-isolation -e .` in the wsis "
    "folder (plain `pip install -e .` builds against the newest torch pip finds, which may not be "
    "the one installed)."
)


def check_build_record(record: Path, torch_version: str) -> None:
    """Raises ImportError unless `record` says wsis._C was built against `torch_version`."""
    try:
        built = json.loads(record.read_text())["torch"]
    except FileNotFoundError:
        raise ImportError(f"wsis._C has no build record ({record}): it was built by an older wsis. {REBUILD}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ImportError(f"wsis._C's build record {record} is unreadable ({e}). {REBUILD}") from None
    if built != torch_version:
        raise ImportError(
            f"wsis._C was compiled against torch {built}, but torch {torch_version} is installed. {REBUILD}"
        )


def _load() -> None:
    spec = importlib.util.find_spec("wsis._C")
    if spec is None or spec.origin is None:
        raise ImportError("wsis._C, the compiled kernels, is not built. Run `pip install -e .` in the wsis folder.")
    check_build_record(Path(spec.origin).with_name("_C_build.json"), torch.__version__)
    try:
        from wsis import _C  # noqa: F401  (registers torch.ops.wsis.*)
    except ImportError as e:  # pragma: no cover - a record that matches but a broken file
        raise ImportError(f"wsis._C could not be imported ({e}). {REBUILD}") from e


_load()
ops = torch.ops.wsis
