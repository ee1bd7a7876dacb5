"""What the compiled library is: its build record and where it comes from.

setup.py compiles a JSON record into the library (torch version, CUDA archs,
nvcc, how it was built) behind ``BUILD_INFO_MARKER``. ``read_build_info``
reads it from the file without loading it, so a library made for another
torch can fail with an error that says so (``explain_load_error``), and
``vllm-moe-align info`` can say which binary is in use (``describe_binary``).
"""

from __future__ import annotations

import importlib.metadata
import json
import mmap
import os
from typing import Any, Optional
from urllib.parse import unquote, urlparse

import torch

#: Prefix of the build-info string in the library (setup.py BUILD_INFO_MARKER).
BUILD_INFO_MARKER = b"VLLM_MOE_ALIGN_BUILD_INFO="
DISTRIBUTION = "vllm-moe-align-plugin"


def read_build_info(path: str) -> Optional[dict[str, Any]]:
    """What the library at ``path`` was built with (a dict: ``torch``,
    ``torch_cuda``, ``cuda``, ``cuda_archs``, ``nvcc``, ``command``,
    ``wheel``, ...), read from the file without loading it; None for a library
    built before it carried one, or an unreadable file."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            start = m.find(BUILD_INFO_MARKER)
            if start < 0:
                return None
            start += len(BUILD_INFO_MARKER)
            end = m.find(b"\0", start)
            info = json.loads(m[start:end if end >= 0 else len(m)].decode())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _major_minor(version: str) -> str:
    return ".".join(version.split("+")[0].split(".")[:2])


def _release(version: str) -> tuple[int, ...]:
    """(major, minor) of ``2.11.0+cu130`` or ``2.11``."""
    return tuple(int("".join(c for c in part if c.isdigit()) or 0)
                 for part in _major_minor(version).split("."))


def is_stable_abi(info: Optional[dict[str, Any]]) -> bool:
    """Whether the library was built on PyTorch's stable ABI (it loads on
    every torch from ``info["torch_floor"]`` on) rather than one torch
    release's C++ ABI."""
    return (info or {}).get("abi") == "stable"


def explain_load_error(exc: BaseException, info: Optional[dict[str, Any]],
                       running: str = torch.__version__) -> BaseException:
    """``exc`` (the library did not load), or, when the library cannot work
    with the torch ``running`` (older than a stable-ABI library's floor, or
    another release than a C++-ABI library's), an ImportError that says so and
    how to fix it (``exc`` as its cause)."""
    info = info or {}
    built = info.get("torch")
    source = "the plugin's wheel" if info.get("wheel") else "this build"
    rebuild = ("rebuild from source against the installed torch (in a checkout: pip install "
               "--no-build-isolation --no-deps --force-reinstall .)")
    if is_stable_abi(info):
        floor = info.get("torch_floor", "?")
        if floor == "?" or _release(running) >= _release(floor):
            return exc
        message = (f"{source} uses PyTorch's stable ABI, which needs torch >= {floor}; "
                   f"torch {running} is older: {rebuild}, which builds against its C++ ABI")
    else:
        if not built or built == running:
            return exc
        message = (f"{source} was made for torch {_major_minor(built)} ({built}); {rebuild}, "
                   f"or install a build made for torch {_major_minor(running)}")
    error = ImportError(f"vllm_moe_align_plugin's compiled op does not load with torch {running}: "
                        f"{message} [{type(exc).__name__}: {exc}]")
    error.__cause__ = exc
    return error


def _file_url_path(url: str) -> Optional[str]:
    parsed = urlparse(url)
    return os.path.realpath(unquote(parsed.path)) if parsed.scheme == "file" else None


def binary_origin(path: Optional[str] = None,
                  dist: Optional[importlib.metadata.Distribution] = None) -> str:
    """Where the library at ``path`` (default: ``binary_path()``) comes from:
    an installed wheel, an editable install built in place in a source tree,
    or an in-place build that is not the installed package. Read from the
    installed distribution's file list and its direct_url.json (PEP 610)."""
    from . import _ops

    path = _ops.binary_path() if path is None else path
    if path is None:
        return "not built"
    if dist is None:
        try:
            dist = importlib.metadata.distribution(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            dist = None
    real = os.path.realpath(path)
    if dist is None:
        return "in-place build in a source tree (no installed vllm-moe-align-plugin)"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        direct = None
    direct = direct if isinstance(direct, dict) else {}
    url = direct.get("url", "")
    installed = {os.path.realpath(str(dist.locate_file(f))) for f in (dist.files or [])
                 if f.name.startswith("_C")}
    if real in installed:
        if "archive_info" in direct:
            return f"installed wheel {dist.version} ({url})"
        if "dir_info" in direct:
            return f"installed {dist.version}, built from the source tree {_file_url_path(url) or url}"
        if "vcs_info" in direct:
            return f"installed {dist.version}, built from {url}"
        return f"installed wheel {dist.version} (from a package index)"
    source = _file_url_path(url) if direct.get("dir_info", {}).get("editable") else None
    if source and real.startswith(source.rstrip(os.sep) + os.sep):
        return f"editable install {dist.version}, built in place in {source}"
    return (f"in-place build in a source tree, not the installed vllm-moe-align-plugin "
            f"{dist.version} ({dist.locate_file('')})")


def describe_binary(with_file: bool = True) -> list[str]:
    """Lines for ``vllm-moe-align info`` under "compiled op": the library's
    file (``with_file``), where it comes from, and what it was built for."""
    from . import _ops

    path = _ops.binary_path()
    if path is None:
        return [f"  {'file':20s}none: not built (pip install --no-build-isolation .)"]
    info = _ops.build_info()
    lines = [f"  {'file':20s}{path}"] if with_file else []
    lines.append(f"  {'from':20s}{binary_origin(path)}")
    if info is None:
        lines.append(f"  {'built for':20s}unknown (a build without build info: rebuild it)")
        return lines
    if is_stable_abi(info):
        torches = (f"torch >= {info.get('torch_floor')} (stable ABI, Python 3 abi3; built with "
                   f"{info.get('torch')}; installed: {torch.__version__})")
    else:
        same = "the installed one" if info.get("torch") == torch.__version__ else \
            f"installed: {torch.__version__}"
        torches = f"torch {info.get('torch')} only (its C++ ABI; {same})"
    command = info.get("command", "?")
    kind = "a wheel build" if info.get("wheel") else "built by " + {
        "editable_wheel": "pip install -e", "bdist_wheel": "pip install / a wheel build",
        "build_ext --inplace": "setup.py build_ext --inplace"}.get(command, command)
    cuda = (f"CUDA kernels ({' '.join(info.get('cuda_archs') or []) or '?'}) by nvcc "
            f"{info.get('nvcc')}" if info.get("cuda")
            else f"CPU kernel only ({info.get('no_cuda_reason') or 'no CUDA kernels'})")
    lines.append(f"  {'built for':20s}{torches}; {cuda}; {kind}")
    if _ops.CUDA_LIBRARY is not None:
        state = "loaded" if _ops.CUDA_LOAD_ERROR is None else f"NOT LOADED: {_ops.CUDA_LOAD_ERROR}"
        lines.append(f"  {'cuda library':20s}{_ops.CUDA_LIBRARY} ({state})")
    return lines
