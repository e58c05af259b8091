"""Builds wsis._C: a CppExtension on a CPU-only torch, a CUDAExtension when torch has CUDA and a
CUDA toolkit is found. WSIS_CUDA=0 forces the CPU build, WSIS_CUDA=1 requires the CUDA one.

`pip install -e .` builds in an isolated environment with the newest torch that pip resolves,
which is also the torch it installs beside wsis in a fresh environment. Where torch is already
installed, `pip install --no-build-isolation -e .` builds against that one. Either way the torch
version is recorded next to the extension (`wsis/_C_build.json`), and importing the kernels under
another torch is a clear error (wsis/ops/_library.py).
"""
import glob
import json
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # --no-build-isolation without torch installed
    sys.exit(
        "wsis: torch is not importable in this build environment. With --no-build-isolation, install "
        "torch first; or drop the flag and pip builds against the torch it installs (see docs/INSTALL.md)."
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


def cuda_include_dirs():
    """The toolkit's headers, then those of the nvidia-* wheels that a pip CUDA torch depends on.

    The wheels fill what a bare toolkit lacks (cuBLAS, cuSPARSE, ...). They come second because
    they can be a newer CUDA minor than the nvcc (torch+cu132 beside nvcc 13.0), and nvcc refuses
    runtime headers newer than itself."""
    dirs = [os.path.join(cpp_extension.CUDA_HOME, "include")]
    try:
        import nvidia
    except ImportError:
        return dirs
    for base in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(base, "*", "include")))
    return dirs


BUILD_RECORD = "_C_build.json"


class BuildExtension(cpp_extension.BuildExtension):
    """torch's build_ext, which also writes the build record beside every copy of wsis._C."""

    def run(self):
        super().run()
        record = {"torch": torch.__version__, "cuda_kernels": WITH_CUDA}
        folders = [os.path.join(self.build_lib, "wsis")]
        if self.inplace:  # editable installs: the extension is copied into the source tree too
            folders.append(self.get_finalized_command("build_py").get_package_dir("wsis"))
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, BUILD_RECORD), "w") as f:
                json.dump(record, f)


def extension(with_cuda: bool):
    sources = [os.path.join("csrc", "ops.cpp")] + sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cxx = ["-O3", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    if with_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        return cpp_extension.CUDAExtension(
            "wsis._C",
            sources,
            include_dirs=cuda_include_dirs(),
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension("wsis._C", sources, extra_compile_args=cxx, extra_link_args=["-fopenmp"])


WITH_CUDA = want_cuda()
setup(
    packages=find_packages(include=["wsis", "wsis.*"]),
    ext_modules=[extension(WITH_CUDA)],
    cmdclass={"build_ext": BuildExtension},
)
