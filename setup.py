"""Builds the plugin's libraries: vllm_moe_align_plugin._C (the ops and the CPU
kernel) always, vllm_moe_align_plugin._C_cuda (the CUDA kernels) when torch is
a CUDA build and a CUDA toolkit (nvcc) is found.

Two frontends bind the same kernels to torch (csrc/frontend/):
  stable  PyTorch's stable ABI (C shim, STABLE_TORCH_LIBRARY) and Python's
          limited API: the libraries (*.abi3.so) load on every torch from
          STABLE_FLOOR upward and every Python from 3.10. The default from
          torch 2.11 on.
  aten    torch's C++ ABI: the libraries load with the torch they were built
          against only. The default for torch older than STABLE_FLOOR.

Environment:
  VLLM_MOE_ALIGN_ABI=stable|aten  the frontend (default: by torch version)
  VLLM_MOE_ALIGN_CUDA=1|0   force the CUDA kernels on (fail if impossible) or off
  VLLM_MOE_ALIGN_WHEEL=1    a wheel to hand out: CUDA kernels required, default
                            archs 8.0;8.9;9.0a;10.0+PTX, host symbols stripped;
                            it requires torch >= STABLE_FLOOR (stable) or the
                            torch major.minor it was built against (aten)
  TORCH_CUDA_ARCH_LIST      archs to build for; default: those of the installed
                            torch, plus 9.0a (Hopper)
  VLLM_MOE_ALIGN_LINEINFO=1 keep source-line tables in the CUDA code (for ncu)
  VLLM_MOE_ALIGN_BUILD_BASE build folder (default: build)
  CUDA_HOME (or CUDA_PATH)  the CUDA toolkit; without it: /usr/local/cuda, the
                            nvcc on PATH, then an nvidia-cuda-nvcc wheel in
                            site-packages (nvidia/cu13/ or nvidia/cuda_nvcc/)
  MAX_JOBS                  parallel compile jobs (torch's ninja build)

What the library was built with (torch version, CUDA archs, nvcc, how it was
built) is compiled into it as a JSON string (build_info_source); the package
reads it to explain a library that does not load with the installed torch.

Importing this file runs nothing (setup() runs only as __main__), so the
helpers can be tested on their own.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from setuptools import setup

ROOT = Path(__file__).parent.resolve()
CUDA_ENV = "VLLM_MOE_ALIGN_CUDA"
ABI_ENV = "VLLM_MOE_ALIGN_ABI"
# The oldest torch the stable frontend is built for (TORCH_TARGET_VERSION): the
# library uses only the stable ABI that this release has, and loads on it and
# on every later release.
STABLE_FLOOR = (2, 11)
# Python's limited API of this version and later (the wheel's abi3 tag; torch
# compiles the extension with Py_LIMITED_API of its oldest Python, 3.10).
LIMITED_API_PYTHON = "cp310"
WHEEL_ENV = "VLLM_MOE_ALIGN_WHEEL"
BUILD_BASE_ENV = "VLLM_MOE_ALIGN_BUILD_BASE"
# Source-line tables for profilers. Off by default: the same machine code, but
# CUDA reads the larger module when it loads it, which made a process's first
# call slower (measured: benchmarks/RESULTS.md, first call by build flags).
LINEINFO_ENV = "VLLM_MOE_ALIGN_LINEINFO"
# Archs of a wheel: cubins for A100/A30 (8.0, and 8.6/8.7 run them), L4/L40
# (8.9), H100/H200 (9.0a), B200/GB200 (10.0, and 10.3 runs it), and PTX of 10.0
# that the driver compiles for anything newer (12.x).
WHEEL_ARCHS = "8.0;8.9;9.0a;10.0+PTX"
STANDARD_TOOLKITS = ("/usr/local/cuda",)
# Prefix of the JSON string compiled into the library (binary.py looks for it).
BUILD_INFO_MARKER = "VLLM_MOE_ALIGN_BUILD_INFO="
PACKAGE = "vllm_moe_align_plugin"
# In the build folder while the last build lacks the CUDA kernels its torch
# could use (the Makefile prints it: pip hides a build's output).
NO_CUDA_FILE = "WARNING-no-cuda-kernels.txt"
NO_TOOLKIT = "no CUDA toolkit (nvcc) was found"


def _env_on(name: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# --- finding the CUDA toolkit ----------------------------------------------


class Toolkit(NamedTuple):
    """A CUDA toolkit: ``home`` has bin/nvcc (torch's CUDA_HOME). The wheel
    layout of CUDA 12 spreads the toolkit over several folders: then
    ``include_dirs`` and ``lib_dirs`` name the runtime's headers and library."""

    home: str
    found_by: str  # "CUDA_HOME", "/usr/local/cuda", "PATH", "nvidia-cuda-nvcc wheel"
    include_dirs: tuple[str, ...] = ()
    lib_dirs: tuple[str, ...] = ()


def _has_nvcc(home: str) -> bool:
    return os.path.isfile(os.path.join(home, "bin", "nvcc"))


def _follow_nvcc_wrapper(nvcc: str) -> str:
    """The real nvcc behind ``nvcc``: symlinks resolved, and a small shell
    script that execs another nvcc (``exec /usr/local/cuda-13.0/bin/nvcc "$@"``)
    followed."""
    real = os.path.realpath(nvcc)
    try:
        with open(real, "rb") as f:
            head = f.read(4096)
    except OSError:
        return real
    if head.startswith(b"#!"):
        match = re.search(rb"(/[^\s\"']+/bin/nvcc)\b", head)
        if match and os.path.realpath(match.group(1).decode()) != real:
            return os.path.realpath(match.group(1).decode())
    return real


def default_site_dirs() -> list[str]:
    """Folders that may hold pip's ``nvidia/`` packages: this interpreter's
    site-packages (user site included) and wherever ``nvidia`` is importable."""
    dirs = [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    try:
        dirs += site.getsitepackages()
    except AttributeError:  # some virtualenvs' site module
        pass
    dirs.append(site.getusersitepackages())
    try:
        import importlib.util

        spec = importlib.util.find_spec("nvidia")
        dirs += [os.path.dirname(p) for p in (spec.submodule_search_locations or [])] if spec else []
    except (ImportError, ValueError):
        pass
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _wheel_toolkits(site_dir: str, cuda_major: Optional[str]) -> list[Toolkit]:
    """nvidia-cuda-nvcc installed as a wheel under ``site_dir``: CUDA 13's
    layout (one folder per CUDA major, nvidia/cu13/{bin,include,lib}), then the
    older one (nvidia/cuda_nvcc/bin/nvcc, the runtime in nvidia/cuda_runtime/,
    cub/thrust in nvidia/cuda_cccl/). torch's CUDA major first."""
    nvidia = os.path.join(site_dir, "nvidia")
    found = []
    homes = sorted(glob.glob(os.path.join(nvidia, "cu[0-9]*")),
                   key=lambda p: (os.path.basename(p) != f"cu{cuda_major}", p))
    for home in homes:
        if _has_nvcc(home):
            found.append(Toolkit(home, "nvidia-cuda-nvcc wheel",
                                 lib_dirs=(os.path.join(home, "lib"),)))
    home = os.path.join(nvidia, "cuda_nvcc")
    if _has_nvcc(home):
        includes = [os.path.join(nvidia, p, "include") for p in ("cuda_runtime", "cuda_cccl")]
        found.append(Toolkit(home, "nvidia-cuda-nvcc wheel",
                             include_dirs=tuple(d for d in includes if os.path.isdir(d)),
                             lib_dirs=(os.path.join(nvidia, "cuda_runtime", "lib"),)))
    return found


def find_cuda_toolkit(
    environ: Optional[Mapping[str, str]] = None,
    standard: tuple[str, ...] = STANDARD_TOOLKITS,
    site_dirs: Optional[list[str]] = None,
    which: Callable[[str], Optional[str]] = shutil.which,
    cuda_major: Optional[str] = None,
) -> tuple[Optional[Toolkit], list[str]]:
    """The CUDA toolkit to build with, and what was looked at (for messages).

    In order: CUDA_HOME (or CUDA_PATH; taken as given, never second-guessed),
    ``standard`` (/usr/local/cuda), the nvcc on PATH (wrappers followed), an
    nvidia-cuda-nvcc wheel in ``site_dirs``."""
    environ = os.environ if environ is None else environ
    tried: list[str] = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = environ.get(var, "").strip()
        if home:
            if _has_nvcc(home):
                return Toolkit(home, var), tried
            return None, [f"{var}={home} (it has no bin/nvcc)"]
    tried.append("CUDA_HOME (not set)")
    for home in standard:
        if _has_nvcc(home):
            return Toolkit(home, home), tried
        tried.append(f"{home} (no bin/nvcc)")
    nvcc = which("nvcc")
    if nvcc:
        home = os.path.dirname(os.path.dirname(_follow_nvcc_wrapper(nvcc)))
        if _has_nvcc(home):
            return Toolkit(home, "PATH"), tried
        tried.append(f"PATH ({nvcc} is not inside a toolkit)")
    else:
        tried.append("PATH (no nvcc)")
    site_dirs = default_site_dirs() if site_dirs is None else site_dirs
    for d in site_dirs:
        wheels = _wheel_toolkits(d, cuda_major)
        if wheels:
            return wheels[0], tried
    tried.append("nvidia-cuda-nvcc wheels (none in " + (", ".join(site_dirs) or "no site-packages")
                 + ")")
    return None, tried


def nvcc_version(home: str) -> Optional[str]:
    """``13.0.88`` from ``nvcc --version`` (None if it does not run)."""
    try:
        out = subprocess.run([os.path.join(home, "bin", "nvcc"), "--version"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"V(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
    return match.group(1) if match else None


# --- building with or without the CUDA kernels --------------------------------


def no_cuda_warning(torch_version: str, reason: str, cuda_major: Optional[str] = None) -> str:
    """The multi-line warning of a build without CUDA kernels whose torch has
    CUDA: the plugin would then leave every GPU call to vLLM's own function."""
    pkg = "nvidia-cuda-nvcc" if cuda_major in (None, "13") else f"nvidia-cuda-nvcc-cu{cuda_major}"
    pin = f'=={cuda_major}.*' if cuda_major and cuda_major != "12" else ""
    rule = "=" * 78
    return "\n".join([
        rule,
        "WARNING: vllm-moe-align-plugin is being built WITHOUT its CUDA kernels.",
        f"  torch {torch_version} is a CUDA build, but {reason}.",
        "  Only the CPU kernel is built: the plugin will run vLLM's own function on GPUs;",
        "  set CUDA_HOME or install nvidia-cuda-nvcc, then rebuild:",
        "    export CUDA_HOME=/path/to/cuda        # a toolkit with bin/nvcc",
        f'    pip install "{pkg}{pin}"    # or: the toolkit as a wheel (found in site-packages)',
        "    pip install --no-build-isolation --no-deps --force-reinstall .",
        rule,
    ])


def want_cuda(torch_cuda: Optional[str], toolkit: Optional[Toolkit],
              environ: Optional[Mapping[str, str]] = None) -> tuple[bool, Optional[str]]:
    """(build the CUDA kernels?, why not). VLLM_MOE_ALIGN_CUDA=1 (and a wheel
    build) fail instead of building without them."""
    environ = os.environ if environ is None else environ
    forced = environ.get(CUDA_ENV, "").strip().lower()
    if torch_cuda is None:
        reason = "torch is not a CUDA build"
    elif toolkit is None:
        reason = NO_TOOLKIT
    else:
        reason = None
    if forced not in ("", "auto") and forced not in ("1", "true", "yes", "on"):
        return False, f"{CUDA_ENV}={environ[CUDA_ENV]} turned them off"
    required = forced in ("1", "true", "yes", "on") or _env_on(WHEEL_ENV, environ)
    if required and reason is not None:
        raise RuntimeError(f"the CUDA kernels are required ({CUDA_ENV}=1 or {WHEEL_ENV}=1) "
                           f"but {reason}; set CUDA_HOME or install nvidia-cuda-nvcc")
    return reason is None, reason


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


def _shim_headers(dirs: list[str], build_base: Path) -> str:
    """A folder of links to the cuBLAS/cuSPARSE/cuSOLVER headers found in
    `dirs`, so adding it to the include path cannot shadow toolkit headers."""
    shim = build_base / "cuda_shim_include"
    shim.mkdir(parents=True, exist_ok=True)
    prefixes = ("cublas", "cusparse", "cusolver", "cufft", "curand")
    for d in dirs:
        for f in os.listdir(d):
            if f.startswith(prefixes):
                link = shim / f
                if not link.exists():
                    link.symlink_to(os.path.join(d, f))
    return str(shim)


def cudart_link_dir(toolkit: Toolkit, build_base: Path) -> Optional[str]:
    """A folder with ``libcudart.so`` for the linker when the toolkit has only
    the versioned library (wheels ship libcudart.so.13, no libcudart.so);
    None when the toolkit's lib64/ or lib/ has it."""
    for sub in ("lib64", "lib"):
        if os.path.exists(os.path.join(toolkit.home, sub, "libcudart.so")):
            return None
    for d in toolkit.lib_dirs:
        for lib in sorted(glob.glob(os.path.join(d, "libcudart.so*")), key=len):
            shim = build_base / "cuda_shim_lib"
            shim.mkdir(parents=True, exist_ok=True)
            link = shim / "libcudart.so"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.realpath(lib))
            return str(shim)
    return None


def torch_release(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version string such as ``2.11.0+cu130``."""
    major, minor = version.split("+")[0].split(".")[:2]
    return int(major), int(re.match(r"\d+", minor).group(0))  # type: ignore[union-attr]


def choose_abi(torch_version: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``"stable"`` or ``"aten"`` (module docstring). VLLM_MOE_ALIGN_ABI picks
    one; ``stable`` with a torch older than STABLE_FLOOR is an error."""
    environ = os.environ if environ is None else environ
    asked = environ.get(ABI_ENV, "").strip().lower()
    if asked not in ("", "auto", "stable", "aten"):
        raise RuntimeError(f"{ABI_ENV}={environ[ABI_ENV]}: use stable or aten")
    old = torch_release(torch_version) < STABLE_FLOOR
    if asked == "stable" and old:
        raise RuntimeError(f"{ABI_ENV}=stable needs torch >= {STABLE_FLOOR[0]}.{STABLE_FLOOR[1]}, "
                           f"got {torch_version}")
    if asked in ("stable", "aten"):
        return asked
    return "aten" if old else "stable"


def old_torch_note(torch_version: str) -> str:
    """What a build for a torch older than STABLE_FLOOR says."""
    floor = f"{STABLE_FLOOR[0]}.{STABLE_FLOOR[1]}"
    major, minor = torch_release(torch_version)
    return (f"torch {torch_version} is older than {floor}: building against its C++ ABI. This "
            f"library loads with torch {major}.{minor} only (rebuild after a torch upgrade); "
            f"the prebuilt wheel needs torch >= {floor}.")


def _target_version_flag() -> str:
    """-DTORCH_TARGET_VERSION for STABLE_FLOOR (torch/csrc/stable/version.h)."""
    major, minor = STABLE_FLOOR
    return f"-DTORCH_TARGET_VERSION=0x{major:02x}{minor:02x}000000000000"


# --- what the library was built with ------------------------------------------


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_info_source(info: dict) -> str:
    """C++ that puts ``info`` into the library as one NUL-terminated string,
    ``VLLM_MOE_ALIGN_BUILD_INFO={json}``: readable from the file without
    loading it, so a library that fails to load can still say what it needs."""
    text = BUILD_INFO_MARKER + json.dumps(info, sort_keys=True, ensure_ascii=True)
    return (
        "// Generated by setup.py: what this library was built with (read by\n"
        "// vllm_moe_align_plugin/binary.py from the file, loaded or not).\n"
        "extern \"C\" __attribute__((used, visibility(\"default\")))\n"
        f"const char vllm_moe_align_build_info[] = {_c_string(text)};\n"
    )


def _write_if_changed(path: Path, text: str) -> None:
    """Leaves the file (and its time stamp: ninja) alone when it is unchanged."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _plugin_version() -> str:
    init = ROOT / PACKAGE / "__init__.py"
    if not init.exists():  # setup.py's helpers imported from a tree without the package
        return "unknown"
    text = init.read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    return match.group(1) if match else "unknown"


def _build_command(argv: list[str]) -> str:
    """``bdist_wheel``, ``editable_wheel``, ``build_ext --inplace``, ...: the
    setuptools commands of this run."""
    words = [a for a in argv[1:] if not a.startswith("-") or a in ("--inplace", "-i")]
    known = ("bdist_wheel", "editable_wheel", "build_ext", "develop", "install", "build",
             "dist_info", "egg_info", "sdist", "--inplace", "-i")
    return " ".join(w for w in words if w in known) or "setup.py"


def _log(build_base: Path, text: str) -> None:
    """Appends to the build log (build/vllm-moe-align-build.log)."""
    build_base.mkdir(parents=True, exist_ok=True)
    with open(build_base / "vllm-moe-align-build.log", "a") as f:
        f.write(text.rstrip("\n") + "\n")


def _extensions(build_base: Path) -> list:
    """The two libraries (csrc/schema.h): _C, and _C_cuda when the CUDA
    kernels are built."""
    import torch

    cuda_major = torch.version.cuda.split(".")[0] if torch.version.cuda else None
    toolkit, tried = find_cuda_toolkit(cuda_major=cuda_major) if torch.version.cuda else (None, [])
    if toolkit:
        # torch.utils.cpp_extension reads CUDA_HOME when it is imported.
        os.environ.setdefault("CUDA_HOME", toolkit.home)
    from torch.utils import cpp_extension

    build_cuda, no_cuda_reason = want_cuda(torch.version.cuda, toolkit)
    wheel = _env_on(WHEEL_ENV)
    abi = choose_abi(torch.__version__)
    info: dict = {
        "plugin": _plugin_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}", "command": _build_command(sys.argv),
        "wheel": wheel, "cuda": build_cuda, "cuda_archs": [], "nvcc": None, "toolkit": None,
        "abi": abi,
    }
    stable = abi == "stable"
    if stable:
        info["torch_floor"] = f"{STABLE_FLOOR[0]}.{STABLE_FLOOR[1]}"
    cxx_flags = ["-O3"]  # torch adds the -std its headers need
    if stable:
        cxx_flags += ["-DVLLM_MOE_ALIGN_STABLE_ABI", _target_version_flag()]
    link_args = ["-s"] if wheel else []  # host symbols out of a wheel (.dynsym stays)
    stamp = f"{PACKAGE} build ({info['command']}): torch {torch.__version__}, {abi} ABI"
    # pip asks for the metadata in a run of its own: say things once, when building.
    quiet = info["command"] in ("dist_info", "egg_info", "sdist")
    if not stable and not quiet and torch_release(torch.__version__) < STABLE_FLOOR:
        note = old_torch_note(torch.__version__)
        print(note, file=sys.stderr, flush=True)
        _log(build_base, note)
    warning_file = build_base / NO_CUDA_FILE
    if build_cuda:
        assert toolkit is not None
        default_archs = WHEEL_ARCHS if wheel else _default_arch_list()
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", default_archs)
        archs = os.environ["TORCH_CUDA_ARCH_LIST"].replace(";", " ").split()
        info.update(cuda_archs=archs, nvcc=nvcc_version(toolkit.home), toolkit=toolkit.found_by)
    else:
        info["no_cuda_reason"] = no_cuda_reason
        if no_cuda_reason == NO_TOOLKIT and not quiet:
            detail = f"{no_cuda_reason} (looked at: {'; '.join(tried)})"
            warning = no_cuda_warning(torch.__version__, detail, cuda_major)
            print(warning, file=sys.stderr, flush=True)
            _log(build_base, f"{stamp}, CPU kernel only\n{warning}")
            _write_if_changed(warning_file, warning + "\n")
        elif not quiet:
            note = f"{stamp}, CPU kernel only ({no_cuda_reason})" + (
                ": the plugin will run vLLM's own function on GPUs" if torch.version.cuda else "")
            print(note, file=sys.stderr, flush=True)
            _log(build_base, note)
            warning_file.unlink(missing_ok=True)
    # _C: the op definitions and the CPU kernels; it links torch's CPU library
    # only, so it loads with any torch build (CPU-only ones too).
    extensions = [cpp_extension.CppExtension(
        f"{PACKAGE}._C",
        ["csrc/cpu/align_cpu.cpp", "csrc/cpu/globalize_cpu.cpp", f"csrc/frontend/{abi}.cpp",
         _generated(build_base, info)],
        extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_args, py_limited_api=stable,
    )]
    if not build_cuda:
        return extensions
    assert toolkit is not None
    include_dirs = list(toolkit.include_dirs)
    if not stable and not any(os.path.exists(os.path.join(d, "cublas_v2.h"))
                              for d in [os.path.join(toolkit.home, "include"), *include_dirs]):
        # ATen's CUDA headers include cuBLAS/cuSPARSE: only the headers the
        # toolkit lacks, so its own runtime headers win.
        extra = [d for d in _pip_cuda_includes()
                 if os.path.exists(os.path.join(d, "cublas_v2.h"))
                 or os.path.exists(os.path.join(d, "cusparse.h"))]
        include_dirs += [_shim_headers(extra, build_base)] if extra else []
    link_dir = cudart_link_dir(toolkit, build_base)
    if not quiet:
        _log(build_base, f"{stamp}, CUDA kernels for {' '.join(archs)} with nvcc {info['nvcc']} "
                         f"({toolkit.found_by}: {toolkit.home})")
        warning_file.unlink(missing_ok=True)
    # _C_cuda: the CUDA kernels and the CUDA host ops, loaded after _C where
    # torch has CUDA. One token (no spaces or quotes to survive the shell):
    # 7.5_9.0a_10.0+PTX
    archs_flag = "-DVLLM_MOE_ALIGN_CUDA_ARCHS=" + "_".join(archs)
    extensions.append(cpp_extension.CUDAExtension(
        f"{PACKAGE}._C_cuda",
        ["csrc/cuda/cuda_host.cpp", "csrc/cuda/launch.cpp", "csrc/cuda/plan.cpp",
         # one CUDA module per regime and id type (csrc/cuda/kernels.h)
         "csrc/cuda/tiny_int32.cu", "csrc/cuda/tiny_int64.cu", "csrc/cuda/spread_int32.cu",
         "csrc/cuda/spread_int64.cu", "csrc/cuda/tiled_int32.cu", "csrc/cuda/tiled_int64.cu",
         "csrc/cuda/tiled_globalize.cu", "csrc/cuda/globalize.cu",
         f"csrc/frontend/{abi}_cuda.cpp"],
        include_dirs=include_dirs,
        library_dirs=[link_dir] if link_dir else [],
        extra_compile_args={
            "cxx": [*cxx_flags, archs_flag],
            "nvcc": ["-O3", "--threads=0"] + (["-lineinfo"] if _env_on(LINEINFO_ENV) else []),
        },
        extra_link_args=link_args,
        py_limited_api=stable,
    ))
    return extensions


def _remove_in_place_libraries() -> None:
    """Before a build in place: removes the libraries of an earlier one, which
    could outlive it (Python prefers _C.cpython-*.so to _C.abi3.so, and a
    build without CUDA kernels leaves no _C_cuda to replace an old one)."""
    for path in (ROOT / PACKAGE).glob("_C*.so"):
        path.unlink()


def _generated(build_base: Path, info: dict) -> str:
    """Writes the build-info source; its path relative to the project (as the
    other sources are)."""
    path = build_base / "generated" / "build_info.cpp"
    _write_if_changed(path, build_info_source(info))
    return os.path.relpath(path, ROOT) if path.is_relative_to(ROOT) else str(path)


def _build_ext():
    from torch.utils.cpp_extension import BuildExtension

    base = BuildExtension.with_options(use_ninja=shutil.which("ninja") is not None
                                       or _has_ninja_module())

    class BuildExt(base):  # type: ignore[misc, valid-type]
        def run(self) -> None:
            if self.inplace:  # build_ext --inplace, and pip install -e
                _remove_in_place_libraries()
            super().run()

    return BuildExt


def _has_ninja_module() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True


def _requirements() -> list[str]:
    """The torch a wheel's binary loads with: STABLE_FLOOR and later (stable
    ABI), or the major.minor it was built against (C++ ABI). A source build
    needs a torch."""
    if not _env_on(WHEEL_ENV):
        return ["torch>=2.4"]
    import torch

    if choose_abi(torch.__version__) == "stable":
        return [f"torch>={STABLE_FLOOR[0]}.{STABLE_FLOOR[1]}"]
    major, minor = torch_release(torch.__version__)
    return [f"torch=={major}.{minor}.*"]


def _wheel_options() -> dict:
    """A stable-ABI build is one wheel for every Python 3 from
    LIMITED_API_PYTHON: tag it abi3."""
    import torch

    if choose_abi(torch.__version__) == "stable":
        return {"bdist_wheel": {"py_limited_api": LIMITED_API_PYTHON}}
    return {}


if __name__ == "__main__":
    base = Path(os.environ.get(BUILD_BASE_ENV, "build"))
    base = base if base.is_absolute() else ROOT / base
    options = _wheel_options()
    if os.environ.get(BUILD_BASE_ENV):
        options["build"] = {"build_base": str(base)}
    setup(
        ext_modules=_extensions(base),
        cmdclass={"build_ext": _build_ext()},
        install_requires=_requirements(),
        options=options,
    )
