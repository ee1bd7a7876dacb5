"""The compiled ops, one job per module; importing this package loads the
libraries (``library``), registers the fake kernels (``fake``) and, where CUDA
is already up, preloads the CUDA kernels (``cuda_host``).

- ``library``: loads ``_C`` / ``_C_cuda``; whether they loaded and why not;
- ``build_record``: what the loaded library was built with;
- ``fake``: the fake (meta) kernels for ``torch.compile`` and ``opcheck``;
- ``checks``: the Python side of the argument checks;
- ``cuda_host``: the CUDA backend's archs, launch plan, kernel preload and
  programmatic dependent launch.

Ops (schemas in csrc/schema.h): ``torch.ops.vllm_moe_align.moe_align_block_size``
allocates and returns ``(sorted_token_ids, expert_ids, num_tokens_post_pad,
scatter_idx)``; ``moe_align_block_size_out`` writes into caller buffers, in
vLLM's op-level argument order; ``fused_globalize_align_block_size_out``
(vLLM 0.33's fused globalize + align, CPU kernel only so far) rewrites its
ids in place and writes into caller buffers (the function:
``vllm_moe_align_plugin.globalize``). The names below are this package's
face; the package's own modules use the modules above.
"""

from __future__ import annotations

from . import build_record, checks, cuda_host, fake, library
from .build_record import build_info
from .checks import check_int, typed_error
from .cuda_host import (
    H100_SMEM_OPTIN_BYTES,
    H100_SMS,
    CudaGlobalizePlan,
    CudaLaunchPlan,
    cuda_archs,
    cuda_globalize_plan,
    cuda_launch_plan,
    dependent_launch,
    preload_cuda_kernels,
)
from .library import CUDA_LIBRARY, CUDA_LOAD_ERROR, LOAD_ERROR, available, binary_path, has_backend, require

__all__ = [
    "CUDA_LIBRARY", "CUDA_LOAD_ERROR", "H100_SMEM_OPTIN_BYTES", "H100_SMS", "LOAD_ERROR",
    "CudaGlobalizePlan", "CudaLaunchPlan", "available", "binary_path", "build_info",
    "build_record", "check_int", "checks", "cuda_archs", "cuda_globalize_plan", "cuda_host",
    "cuda_launch_plan", "dependent_launch", "fake", "has_backend", "library",
    "preload_cuda_kernels", "require", "typed_error",
]
