"""Builds wsis._C: a CppExtension on a CPU-only torch, a CUDAExtension when torch has CUDA and a
CUDA toolkit is found. WSIS_CUDA=0 forces the CPU build, WSIS_CUDA=1 requires the CUDA one.

torch must already be installed; build with `pip install --no-build-isolation -e .` so the
extension is compiled against the torch that will import it.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # an isolated build env, or no torch at all
    sys.exit(
        "wsis: torch is not importable in this build environment. Install torch first, then build "
        "with `pip install --no-build-isolation -e .` (see README.md): an isolated build would "
        "compile against a different torch than the one that imports the extension."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    flag = os.environ.get("WSIS_CUDA", "auto").lower()
    home = cpp_extension.CUDA_HOME
    found = (
        torch.version.cuda is not None
        and home is not None
        and os.path.exists(os.path.join(home, "include", "cuda_runtime.h"))
    )
    if flag in ("0", "false", "no"):
        return False
    if flag in ("1", "true", "yes"):
        if not found:
            sys.exit(
                f"wsis: WSIS_CUDA=1 but no usable CUDA toolkit (torch.version.cuda={torch.version.cuda}, "
                f"CUDA_HOME={home}); set CUDA_HOME to the folder holding bin/nvcc and include/."
            )
        return True
    if not found and torch.version.cuda is not None:
        print(f"wsis: torch has CUDA but no toolkit at CUDA_HOME={home}; building the CPU kernels only")
    return found


def pip_cuda_include_dirs():
    """Headers of the nvidia-* wheels that a pip CUDA torch depends on (cuBLAS, cuSPARSE, ...)."""
    try:
        import nvidia
    except ImportError:
        return []
    dirs = []
    for base in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(base, "*", "include")))
    return dirs


def extension():
    sources = [os.path.join("csrc", "ops.cpp")] + sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cxx = ["-O3", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    if want_cuda():
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            "wsis._C",
            sources,
            include_dirs=pip_cuda_include_dirs(),
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension("wsis._C", sources, extra_compile_args=cxx, extra_link_args=["-fopenmp"])


setup(
    packages=find_packages(include=["wsis", "wsis.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
