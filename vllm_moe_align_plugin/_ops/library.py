"""Loads the compiled op libraries and says whether they loaded.

Two libraries (csrc/schema.h): ``_C`` defines the align ops and has their CPU
kernels; ``_C_cuda``, in a build with CUDA kernels, adds the CUDA kernels and
the CUDA host ops. ``_C_cuda`` is loaded only where torch has CUDA; when it
does not load (say, a torch of another CUDA major), ``CUDA_LOAD_ERROR`` says
why and the CPU kernels still work. A library made for another torch fails
with ``LOAD_ERROR`` saying so and how to fix it (``binary.explain_load_error``,
from the build record in the file).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import torch

from ..binary import explain_load_error, read_build_info

#: the package that holds the compiled libraries
_PACKAGE = __name__.rpartition(".")[0].rpartition(".")[0]


def _library_path(name: str = "_C") -> Optional[str]:
    """A compiled library's file, loaded or not (None: not built)."""
    try:
        spec = importlib.util.find_spec(f"{_PACKAGE}.{name}")
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


LOAD_ERROR: Optional[BaseException] = None
try:
    from .. import _C  # noqa: F401 - an empty module; loading it registers the ops
except ImportError as exc:  # not built, or built against another torch
    _path = _library_path()
    LOAD_ERROR = explain_load_error(exc, read_build_info(_path) if _path else None)

#: Why the CUDA library did not load (None: it loaded, or there is none).
CUDA_LOAD_ERROR: Optional[BaseException] = None
CUDA_LIBRARY: Optional[str] = _library_path("_C_cuda")
if CUDA_LIBRARY is not None and os.path.dirname(CUDA_LIBRARY) != os.path.dirname(
        _library_path() or ""):
    CUDA_LIBRARY = None  # another install's (an editable one's finder): not this build's
if LOAD_ERROR is None and CUDA_LIBRARY is not None:
    if torch.version.cuda is None:
        CUDA_LOAD_ERROR = ImportError(f"torch {torch.__version__} is not a CUDA build")
    else:
        try:
            from .. import _C_cuda  # noqa: F401 - registers the CUDA kernels
        except ImportError as exc:  # e.g. a torch of another CUDA major
            CUDA_LOAD_ERROR = exc


def available() -> bool:
    """True when the compiled ops are registered."""
    return LOAD_ERROR is None


def require() -> None:
    """Raises ImportError saying why the compiled ops are missing."""
    if LOAD_ERROR is not None:
        raise ImportError(
            "vllm_moe_align_plugin's compiled op failed to load "
            f"({LOAD_ERROR}); reinstall with `pip install --no-build-isolation .` "
            "against the torch you run"
        ) from LOAD_ERROR


def binary_path() -> Optional[str]:
    """The file of the compiled library (the loaded one when it loaded)."""
    if LOAD_ERROR is None:
        return getattr(_C, "__file__", None)
    return _library_path()


#: the library's tensor ops (csrc/schema.h), as the dispatcher names them
TENSOR_OPS = ("vllm_moe_align::moe_align_block_size", "vllm_moe_align::moe_align_block_size_out",
              "vllm_moe_align::fused_globalize_align_block_size_out")


def has_backend(device_type: str, op: str = "vllm_moe_align::moe_align_block_size_out") -> bool:
    """Whether ``op`` (by default the align op) has a kernel for ``"cpu"`` or
    ``"cuda"`` in this build."""
    if LOAD_ERROR is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(op, device_type.upper())
