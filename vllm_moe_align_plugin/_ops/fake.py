"""The ops' fake (meta) kernels: output shapes without running anything, so
``torch.compile`` can trace callers and ``torch.library.opcheck`` can check
them. Registered on import when the compiled library loaded."""

from __future__ import annotations

from typing import Optional

import torch

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


if library.available():
    torch.library.register_fake("vllm_moe_align::moe_align_block_size")(_align_fake)
    torch.library.register_fake("vllm_moe_align::moe_align_block_size_out")(_align_out_fake)
