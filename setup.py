"""Builds vllm_moe_align_plugin._C: the CPU kernel always, the CUDA kernel when
torch is a CUDA build and nvcc is found.

Environment:
  VLLM_MOE_ALIGN_CUDA=1|0   force the CUDA kernel on (fail if impossible) or off
  TORCH_CUDA_ARCH_LIST      archs to build for; default: those of the installed
                            torch, plus 9.0a (Hopper)
  VLLM_MOE_ALIGN_LINEINFO=1 keep source-line tables in the CUDA code (for ncu)
  MAX_JOBS                  parallel compile jobs (torch's ninja build)
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()
CUDA_ENV = "VLLM_MOE_ALIGN_CUDA"
# Source-line tables for profilers. Off by default: the same machine code, but
# CUDA reads the larger module when it loads it, which made a process's first
# call slower (measured: benchmarks/RESULTS.md, first call by build flags).
LINEINFO_ENV = "VLLM_MOE_ALIGN_LINEINFO"


def _env_on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _find_cuda_home() -> str | None:
    """CUDA_HOME, else the toolkit of the nvcc on PATH (following wrappers)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    for candidate in ("/usr/local/cuda",):
        if os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    real = Path(os.path.realpath(nvcc))
    home = real.parent.parent
    return str(home) if (home / "include" / "cuda.h").exists() else None


def _want_cuda(torch_cuda: str | None, cuda_home: str | None) -> bool:
    forced = os.environ.get(CUDA_ENV)
    if forced is not None and forced.strip() not in ("", "auto"):
        want = forced.strip().lower() in ("1", "true", "yes", "on")
        if want and (torch_cuda is None or cuda_home is None):
            raise RuntimeError(
                f"{CUDA_ENV}=1 but torch is not a CUDA build ({torch_cuda=}) "
                f"or nvcc was not found ({cuda_home=})"
            )
        return want
    return torch_cuda is not None and cuda_home is not None


def _default_arch_list() -> str:
    """Archs of the installed torch build, plus sm_90a for Hopper."""
    import torch

    flags = torch._C._cuda_getArchFlags().split() if torch.version.cuda else []
    archs = []
    for flag in flags:
        if flag.startswith("sm_"):
            num = flag[3:]
            archs.append(f"{num[:-1]}.{num[-1]}")
    if "9.0" in archs:
        archs.append("9.0a")
    return ";".join(archs or ["9.0", "9.0a"])


def _pip_cuda_includes() -> list[str]:
    """Header folders of pip's nvidia packages (cuBLAS/cuSPARSE headers, which
    ATen's CUDA headers include and a bare toolkit may lack)."""
    try:
        import nvidia  # namespace package of the nvidia-* wheels
    except ImportError:
        return []
    out = []
    for base in getattr(nvidia, "__path__", []):
        out += sorted(glob.glob(os.path.join(base, "cu*", "include")))
        out += sorted(glob.glob(os.path.join(base, "*", "include")))
    return [d for d in dict.fromkeys(out) if os.path.isdir(d)]


def _extension():
    cuda_home = _find_cuda_home()
    if cuda_home:
        os.environ.setdefault("CUDA_HOME", cuda_home)
    import torch
    from torch.utils import cpp_extension

    build_cuda = _want_cuda(torch.version.cuda, cuda_home)
    sources = ["csrc/schema.cpp", "csrc/checks.cpp", "csrc/align_alloc.cpp",
               "csrc/cuda_host.cpp", "csrc/cpu/align_cpu.cpp"]
    cxx_flags = ["-O3"]  # torch adds the -std its headers need
    kwargs: dict = {}
    if not build_cuda:
        return cpp_extension.CppExtension(
            "vllm_moe_align_plugin._C", sources,
            extra_compile_args={"cxx": cxx_flags}, py_limited_api=False,
        )
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", _default_arch_list())
    archs = os.environ["TORCH_CUDA_ARCH_LIST"].replace(";", " ").split()
    # One pp-number token (no spaces or quotes to survive the shell): 7.5_9.0a
    cxx_flags.append("-DVLLM_MOE_ALIGN_CUDA_ARCHS=" + "_".join(archs))
    sources += ["csrc/cuda/align_cuda.cpp", "csrc/cuda/plan.cpp", "csrc/cuda/tiny.cu",
                "csrc/cuda/spread.cu", "csrc/cuda/tiled.cu"]
    extra_includes = []
    cuda_include = Path(cuda_home) / "include"
    if not (cuda_include / "cublas_v2.h").exists():
        # Only the headers the toolkit lacks, so its own runtime headers win.
        extra_includes = [d for d in _pip_cuda_includes()
                          if os.path.exists(os.path.join(d, "cublas_v2.h"))
                          or os.path.exists(os.path.join(d, "cusparse.h"))]
        extra_includes = [_shim_headers(extra_includes)] if extra_includes else []
    kwargs["include_dirs"] = extra_includes
    return cpp_extension.CUDAExtension(
        "vllm_moe_align_plugin._C", sources,
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "--threads=0"] + (["-lineinfo"] if _env_on(LINEINFO_ENV) else []),
        },
        **kwargs,
    )


def _shim_headers(dirs: list[str]) -> str:
    """A folder of links to the cuBLAS/cuSPARSE/cuSOLVER headers found in
    `dirs`, so adding it to the include path cannot shadow toolkit headers."""
    shim = ROOT / "build" / "cuda_shim_include"
    shim.mkdir(parents=True, exist_ok=True)
    prefixes = ("cublas", "cusparse", "cusolver", "cufft", "curand")
    for d in dirs:
        for f in os.listdir(d):
            if f.startswith(prefixes):
                link = shim / f
                if not link.exists():
                    link.symlink_to(os.path.join(d, f))
    return str(shim)


def _build_ext():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None
                                       or _has_ninja_module())


def _has_ninja_module() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": _build_ext()},
)
