"""Loads the compiled op library and gives both ops fake (meta) kernels, so
``torch.compile`` can trace callers and ``torch.library.opcheck`` can check them.

Ops (schemas in csrc/bindings.cpp):

- ``torch.ops.vllm_moe_align.moe_align_block_size_out`` writes into caller
  buffers, in vLLM's op-level argument order.
- ``torch.ops.vllm_moe_align.moe_align_block_size`` allocates and returns
  ``(sorted_token_ids, expert_ids, num_tokens_post_pad, scatter_idx)``.
"""

from __future__ import annotations

from typing import Optional

import torch

LOAD_ERROR: Optional[BaseException] = None
try:
    from . import _C  # noqa: F401  (registers the ops)
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
