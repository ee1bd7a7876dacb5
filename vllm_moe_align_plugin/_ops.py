"""Loads the compiled op libraries and gives their ops fake (meta) kernels, so
``torch.compile`` can trace callers and ``torch.library.opcheck`` can check them.

Two libraries (csrc/schema.h): ``_C`` defines the align ops and has their CPU
kernels; ``_C_cuda``, in a build with CUDA kernels, adds the CUDA kernels and
the CUDA host ops. ``_C_cuda`` is loaded only where torch has CUDA; when it
does not load (say, a torch of another CUDA major), ``CUDA_LOAD_ERROR`` says
why and the CPU kernels still work.

Ops (schemas in csrc/schema.h):

- ``torch.ops.vllm_moe_align.moe_align_block_size_out`` writes into caller
  buffers, in vLLM's op-level argument order.
- ``torch.ops.vllm_moe_align.moe_align_block_size`` allocates and returns
  ``(sorted_token_ids, expert_ids, num_tokens_post_pad, scatter_idx)``.
- ``cuda_launch_plan``, ``preload_cuda_kernels``, ``cuda_archs``: questions
  about the CUDA backend, wrapped below.

The library carries what it was built with (torch version, CUDA archs, nvcc,
how it was built: setup.py's ``build_info_source``) as a string in its file.
``build_info()`` reads it whether or not the library loads, so a library made
for another torch fails with ``LOAD_ERROR`` saying so and how to fix it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import operator
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch

from .binary import explain_load_error, read_build_info
from .messages import describe


def _library_path(name: str = "_C") -> Optional[str]:
    """A compiled library's file, loaded or not (None: not built)."""
    try:
        spec = importlib.util.find_spec(f"{__package__}.{name}")
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


LOAD_ERROR: Optional[BaseException] = None
try:
    from . import _C  # noqa: F401 - an empty module; loading it registers the ops
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
            from . import _C_cuda  # noqa: F401 - registers the CUDA kernels
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


_build_info: Optional[dict[str, Any]] = None


def binary_path() -> Optional[str]:
    """The file of the compiled library (the loaded one when it loaded)."""
    if LOAD_ERROR is None:
        return getattr(_C, "__file__", None)
    return _library_path()


def build_info() -> Optional[dict[str, Any]]:
    """What the compiled library was built with (``read_build_info``), cached;
    None when there is no library or it predates build info."""
    global _build_info
    if _build_info is None:
        path = binary_path()
        _build_info = read_build_info(path) if path else None
    return _build_info


def has_backend(device_type: str) -> bool:
    """Whether the op has a kernel for ``"cpu"`` or ``"cuda"`` in this build."""
    if LOAD_ERROR is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(
        "vllm_moe_align::moe_align_block_size_out", device_type.upper()
    )


_OPS = torch.ops.vllm_moe_align

#: How the ops word a wrong dtype (csrc/checks.h): "<name> must be an int32
#: tensor, got Long", "topk_ids must be an integer tensor (int64, ...), got Float".
_DTYPE_ERRORS = ("an int32 tensor, got ", "an integer tensor (")


def typed_error(exc: ValueError) -> Exception:
    """The error the package's functions raise for ``exc``, a ValueError from
    an op: a TypeError for a wrong dtype. A library on PyTorch's stable ABI
    (csrc/frontend/stable.cpp) can raise ValueError but not TypeError, so its
    dtype errors arrive as ValueError; the C++-ABI library raises TypeError
    itself. Any other error is returned as it is."""
    message = str(exc)
    if message.partition(" must be ")[2].startswith(_DTYPE_ERRORS):
        error = TypeError(message)
        error.__cause__ = exc
        return error
    return exc


def _check_devices(topk_ids: torch.Tensor, **tensors: Optional[torch.Tensor]) -> None:
    """The C++ ops' device check (csrc/checks.h), in the same words: every
    tensor argument is on topk_ids' device. The fake kernels run it because a
    meta tensor among real ones sends the call to them, not to a backend."""
    for name, t in tensors.items():
        if t is not None and t.device != topk_ids.device:
            raise ValueError(
                f"{name} must be on the same device as topk_ids ({topk_ids.device}), "
                f"got {t.device}"
            )


if LOAD_ERROR is None:

    @torch.library.register_fake("vllm_moe_align::moe_align_block_size")
    def _align_fake(
        topk_ids: torch.Tensor,
        num_experts: int,
        block_size: int,
        max_num_tokens_padded: int,
        expert_map: Optional[torch.Tensor] = None,
        ignore_invalid_experts: bool = False,
        expert_ids_tail: int = -1,
        return_scatter_idx: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_devices(topk_ids, expert_map=expert_map)

        def new(*shape: int) -> torch.Tensor:
            return topk_ids.new_empty(shape, dtype=torch.int32)

        num_blocks = (max_num_tokens_padded + block_size - 1) // block_size
        scatter_rows = topk_ids.numel() if return_scatter_idx else 0
        return new(max_num_tokens_padded), new(num_blocks), new(1), new(scatter_rows, 1)

    @torch.library.register_fake("vllm_moe_align::moe_align_block_size_out")
    def _align_out_fake(
        topk_ids: torch.Tensor,
        num_experts: int,
        block_size: int,
        sorted_token_ids: torch.Tensor,
        expert_ids: torch.Tensor,
        num_tokens_post_pad: torch.Tensor,
        expert_map: Optional[torch.Tensor] = None,
        scatter_idx: Optional[torch.Tensor] = None,
        ignore_invalid_experts: bool = False,
        expert_ids_tail: int = -1,
    ) -> None:
        _check_devices(
            topk_ids,
            sorted_token_ids=sorted_token_ids,
            expert_ids=expert_ids,
            num_tokens_post_pad=num_tokens_post_pad,
            expert_map=expert_map,
            scatter_idx=scatter_idx,
        )


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_int(name: str, value: object) -> int:
    """``value`` as a Python int: an integer (anything with ``__index__`` but a
    bool) that fits the ops' 64-bit ints; else TypeError / ValueError naming
    ``name``. Every integer argument the package passes to an op goes through it."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int, got {describe(value)}") from None
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"{name} must fit in a signed 64-bit integer, got {describe(number)}")
    return number


def _require_cuda_kernels() -> None:
    """NotImplementedError without the CUDA kernels (a build without them, or
    a CUDA library that did not load: its host ops do not exist then)."""
    if not has_backend("cuda"):
        if CUDA_LOAD_ERROR is not None:
            raise NotImplementedError(f"the CUDA kernels did not load: {CUDA_LOAD_ERROR}")
        raise NotImplementedError("this build has no CUDA kernels")


def cuda_archs() -> list[str]:
    """The CUDA archs this build's kernels were compiled for (e.g.
    ``["8.0", "9.0", "9.0a"]``); empty for a CPU-only build or when the
    CUDA library is not loaded."""
    if not has_backend("cuda"):
        return []
    return _OPS.cuda_archs().split()


def preload_cuda_kernels(device: Optional[int] = None) -> None:
    """Loads the CUDA kernels on ``device`` (default: the current one) ahead of
    the first call. CUDA loads a library's kernels when one is first used,
    which makes the first call of a process several times slower than the
    next. Raises RuntimeError on a CUDA error (no GPU, no kernel image for
    it), NotImplementedError without CUDA kernels in this build."""
    require()
    index = torch.cuda.current_device() if device is None else check_int("device", device)
    _require_cuda_kernels()
    _OPS.preload_cuda_kernels(index)


# The H100's values (and the defaults of cuda_launch_plan): SMs, and the
# shared memory a block may opt into (227 KiB).
H100_SMS = 132
H100_SMEM_OPTIN_BYTES = 232448

REGIMES = ("tiny", "spread", "tiled, prefix in each CTA", "tiled, scan kernel")


@dataclass(frozen=True)
class CudaLaunchPlan:
    """What the CUDA backend launches for one call (``plan_launch`` in
    csrc/cuda/plan.cpp decides it; this only reports it)."""

    regime: str
    launches: int  # kernels per call
    ctas: int  # CTAs of each kernel but the scan kernel
    tile_routes: int  # routes each CTA places
    threads: int  # per CTA
    hist_warps: int  # tiled: warps with a histogram row
    smem_bytes: int  # dynamic shared memory per CTA
    scratch_ints: int  # device scratch per call, in int32
    fits: bool  # False: num_experts needs more shared memory than the GPU has


def cuda_launch_plan(
    numel: int,
    num_experts: int,
    block_size: int,
    sorted_size: int,
    map_while_counting: bool = False,
    num_sms: int = H100_SMS,
    smem_optin_bytes: int = H100_SMEM_OPTIN_BYTES,
) -> CudaLaunchPlan:
    """The launch plan of the CUDA backend for these sizes on a GPU with
    ``num_sms`` SMs (host code: no GPU needed). ValueError names a bad
    argument; NotImplementedError without CUDA kernels in this build."""
    require()
    sizes = {"numel": numel, "num_experts": num_experts, "block_size": block_size,
             "sorted_size": sorted_size, "num_sms": num_sms, "smem_optin_bytes": smem_optin_bytes}
    n, e, b, size, sms, smem = (check_int(name, value) for name, value in sizes.items())
    _require_cuda_kernels()
    v = _OPS.cuda_launch_plan(n, e, b, size, bool(map_while_counting), sms, smem)
    return CudaLaunchPlan(REGIMES[v[0]], *v[1:8], fits=bool(v[8]))


def _preload_if_cuda_is_up() -> None:
    """At import: preload on the current device if this process already has a
    CUDA context there, so the load is paid here and not in the first call.
    Never starts CUDA or creates a context (that would break fork-based
    workers and, in a process bound to another GPU, take memory on GPU 0), and
    never raises: a failure only costs the first call its speed."""
    try:
        if not torch.cuda.is_initialized():
            return
        device = torch.cuda.current_device()
        if torch._C._cuda_hasPrimaryContext(device):
            preload_cuda_kernels(device)
    except Exception:  # noqa: BLE001
        pass


if LOAD_ERROR is None and has_backend("cuda"):
    _preload_if_cuda_is_up()
