"""What a compiled library file is: its build record, and whether it can load.

setup.py compiles a JSON record into the library (torch version, CUDA archs,
nvcc, how it was built) behind ``BUILD_INFO_MARKER``. ``read_build_info``
reads it from the file without loading it, so a library made for another
torch can fail with an error that says so (``explain_load_error``), and
``vllm-moe-align info`` can say which binary is in use.
"""

from __future__ import annotations

import json
import mmap
from typing import Any, Optional

import torch

#: Prefix of the build-info string in the library (setup.py BUILD_INFO_MARKER).
BUILD_INFO_MARKER = b"VLLM_MOE_ALIGN_BUILD_INFO="


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
