"""Loads the compiled op library and gives both ops fake (meta) kernels, so
``torch.compile`` can trace callers and ``torch.library.opcheck`` can check them.

Ops (schemas in csrc/bindings.cpp):

- ``torch.ops.vllm_moe_align.moe_align_block_size_out`` writes into caller
  buffers, in vLLM's op-level argument order.
- ``torch.ops.vllm_moe_align.moe_align_block_size`` allocates and returns
  ``(sorted_token_ids, expert_ids, num_tokens_post_pad, scatter_idx)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

LOAD_ERROR: Optional[BaseException] = None
try:
    from . import _C  # registers the ops
except ImportError as exc:  # not built, or built against another torch
    LOAD_ERROR = exc


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


def has_backend(device_type: str) -> bool:
    """Whether the op has a kernel for ``"cpu"`` or ``"cuda"`` in this build."""
    if LOAD_ERROR is not None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(
        "vllm_moe_align::moe_align_block_size_out", device_type.upper()
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
        return None


def preload_cuda_kernels(device: Optional[int] = None) -> None:
    """Loads the CUDA kernels on ``device`` (default: the current one) ahead of
    the first call. CUDA loads a library's kernels when one is first used; on
    the H100 that made the first call of a process ~1 ms instead of ~0.2 ms.
    Raises RuntimeError on a CUDA error, NotImplementedError without CUDA
    kernels in this build."""
    require()
    _C.preload_cuda_kernels(torch.cuda.current_device() if device is None else device)


# The H100's values (and the defaults of cuda_launch_plan): SMs, and the
# shared memory a block may opt into (227 KiB).
H100_SMS = 132
H100_SMEM_OPTIN_BYTES = 232448

REGIMES = ("tiny", "spread", "tiled, prefix in each CTA", "tiled, scan kernel")


@dataclass(frozen=True)
class CudaLaunchPlan:
    """What the CUDA backend launches for one call (``plan_launch`` in
    csrc/cuda/moe_align_kernels.cu decides it; this only reports it)."""

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
    v = _C.cuda_launch_plan(numel, num_experts, block_size, sorted_size,
                            map_while_counting, num_sms, smem_optin_bytes)
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
