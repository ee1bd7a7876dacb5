"""The ops' fake (meta) kernels: output shapes without running anything, so
``torch.compile`` can trace callers and ``torch.library.opcheck`` can check
them. Registered on import when the compiled library loaded."""

from __future__ import annotations

from typing import Optional

import torch

from ..globalize_reference import buffer_sizes
from . import library
from .checks import check_devices


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
    check_devices(topk_ids, expert_map=expert_map)

    def new(*shape: int) -> torch.Tensor:
        return topk_ids.new_empty(shape, dtype=torch.int32)

    num_blocks = (max_num_tokens_padded + block_size - 1) // block_size
    scatter_rows = topk_ids.numel() if return_scatter_idx else 0
    return new(max_num_tokens_padded), new(num_blocks), new(1), new(scatter_rows, 1)


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
    check_devices(
        topk_ids,
        sorted_token_ids=sorted_token_ids,
        expert_ids=expert_ids,
        num_tokens_post_pad=num_tokens_post_pad,
        expert_map=expert_map,
        scatter_idx=scatter_idx,
    )


def _globalize_out_fake(
    recv_topk_idx: torch.Tensor,
    psum_recv_per_rank: torch.Tensor,
    rank_expert_offset: int,
    global_num_experts: int,
    local_num_experts: int,
    block_size: int,
    sorted_ids: torch.Tensor,
    expert_ids: torch.Tensor,
    num_tokens_post_pad: torch.Tensor,
    scatter_idx: Optional[torch.Tensor] = None,
) -> None:
    """The C++ checks of devices and buffer sizes (csrc/checks.h,
    check_globalize_out_args), in the same words; the rest is left to the op."""
    check_devices(recv_topk_idx, "recv_topk_idx", psum_recv_per_rank=psum_recv_per_rank,
                  sorted_ids=sorted_ids, expert_ids=expert_ids,
                  num_tokens_post_pad=num_tokens_post_pad, scatter_idx=scatter_idx)
    numel = recv_topk_idx.numel()
    sizes = buffer_sizes(numel, local_num_experts, block_size)
    if sizes is None:
        return  # arguments the op refuses, naming them
    size, blocks = sizes
    if sorted_ids.numel() != size:
        raise ValueError(
            f"sorted_ids must have {size} elements for {numel} routes, local_num_experts="
            f"{local_num_experts}, block_size={block_size}; got {sorted_ids.numel()}"
        )
    if expert_ids.numel() != blocks:
        raise ValueError(
            f"expert_ids must have {blocks} elements (one per block of sorted_ids), got {expert_ids.numel()}"
        )
    if num_tokens_post_pad.numel() != 1:
        raise ValueError(
            f"num_tokens_post_pad must have exactly one element, got {num_tokens_post_pad.numel()}"
        )
    if scatter_idx is not None and scatter_idx.numel() != numel:
        raise ValueError(f"scatter_idx must have {numel} elements (one per route), got {scatter_idx.numel()}")


if library.available():
    torch.library.register_fake("vllm_moe_align::moe_align_block_size")(_align_fake)
    torch.library.register_fake("vllm_moe_align::moe_align_block_size_out")(_align_out_fake)
    torch.library.register_fake("vllm_moe_align::fused_globalize_align_block_size_out")(_globalize_out_fake)
