"""The drop-in ``moe_align_block_size`` and its per-version variants.

``moe_align_block_size`` has vLLM 0.33's signature and contract. ``drop_in_for``
and ``op_level_for`` build the function and the op-level wrapper with the exact
signature of an older vLLM line, for ``vllm_plugin`` to install. Each call
checks its arguments in Python (cheap ``isinstance`` tests) and makes exactly
one call into C++, which allocates the outputs and runs the kernel.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from . import _ops
from .contract import NEWEST, Contract

AlignResult = Union[
    tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
]

_ARG_ORDER_HINT = (
    "the signature is moe_align_block_size(topk_ids, block_size, num_experts, "
    "expert_map=None, pad_sorted_ids=False, ...): passing top_k as a fourth "
    "positional argument puts it in expert_map"
)


def _check_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")


def _check_args(
    topk_ids: object,
    block_size: object,
    num_experts: object,
    expert_map: object,
    ignore_invalid_experts: bool,
    return_scatter_idx: bool,
) -> None:
    """Python-level checks whose C++ counterparts would give a worse message;
    dtype, device, size and range checks live in the op (csrc/bindings.cpp)."""
    if not isinstance(topk_ids, torch.Tensor):
        raise TypeError(f"topk_ids must be a torch.Tensor, got {type(topk_ids).__name__}")
    _check_int("block_size", block_size)
    _check_int("num_experts", num_experts)
    if expert_map is not None and not isinstance(expert_map, torch.Tensor):
        raise TypeError(
            f"expert_map must be a torch.Tensor or None, got {type(expert_map).__name__} "
            f"({expert_map!r}); {_ARG_ORDER_HINT}"
        )
    if return_scatter_idx and expert_map is not None and not ignore_invalid_experts:
        raise ValueError(
            "return_scatter_idx with expert_map requires ignore_invalid_experts=True"
        )


def _align(
    contract: Contract,
    topk_ids: torch.Tensor,
    block_size: int,
    num_experts: int,
    expert_map: Optional[torch.Tensor],
    pad_sorted_ids: bool,
    ignore_invalid_experts: bool,
    return_scatter_idx: bool,
) -> AlignResult:
    _check_args(
        topk_ids, block_size, num_experts, expert_map, ignore_invalid_experts, return_scatter_idx
    )
    size = contract.max_num_tokens_padded(
        topk_ids.numel(), num_experts, block_size, pad_sorted_ids
    )
    sorted_ids, expert_ids, post_pad, scatter_idx = _ALIGN(
        topk_ids,
        num_experts,
        block_size,
        size,
        expert_map,
        ignore_invalid_experts,
        contract.expert_ids_tail,
        return_scatter_idx,
    )
    if return_scatter_idx:
        return sorted_ids, expert_ids, post_pad, scatter_idx
    return sorted_ids, expert_ids, post_pad


def moe_align_block_size(
    topk_ids: torch.Tensor,
    block_size: int,
    num_experts: int,
    expert_map: Optional[torch.Tensor] = None,
    pad_sorted_ids: bool = False,
    ignore_invalid_experts: bool = False,
    *,
    return_scatter_idx: bool = False,
) -> AlignResult:
    """Sorts routes by expert and pads each expert's share to ``block_size``.

    Same signature and results as vLLM 0.33's function (the contract:
    ``vllm_moe_align_plugin.reference``), with route indices ascending inside
    each expert's segment. ``topk_ids`` of any shape and integer dtype is the
    flat list of routes; ids outside ``[0, num_experts)`` are ignored.

    Returns ``(sorted_token_ids, expert_ids, num_tokens_post_pad)``, plus
    ``scatter_idx`` (``[numel, 1]``) when ``return_scatter_idx``; all int32 on
    ``topk_ids.device``.
    """
    return _align(
        NEWEST, topk_ids, block_size, num_experts, expert_map,
        pad_sorted_ids, ignore_invalid_experts, return_scatter_idx,
    )


def drop_in_for(contract: Contract) -> Callable[..., AlignResult]:
    """The Python-level function with exactly the signature of ``contract``'s
    vLLM line."""
    if contract.has_scatter_idx:

        def moe_align_block_size_v33(
            topk_ids: torch.Tensor,
            block_size: int,
            num_experts: int,
            expert_map: Optional[torch.Tensor] = None,
            pad_sorted_ids: bool = False,
            ignore_invalid_experts: bool = False,
            *,
            return_scatter_idx: bool = False,
        ) -> AlignResult:
            return _align(
                contract, topk_ids, block_size, num_experts, expert_map,
                pad_sorted_ids, ignore_invalid_experts, return_scatter_idx,
            )

        fn: Callable[..., AlignResult] = moe_align_block_size_v33
    elif contract.has_ignore_invalid_experts:

        def moe_align_block_size_v13(
            topk_ids: torch.Tensor,
            block_size: int,
            num_experts: int,
            expert_map: Optional[torch.Tensor] = None,
            pad_sorted_ids: bool = False,
            ignore_invalid_experts: bool = False,
        ) -> AlignResult:
            return _align(
                contract, topk_ids, block_size, num_experts, expert_map,
                pad_sorted_ids, ignore_invalid_experts, False,
            )

        fn = moe_align_block_size_v13
    else:

        def moe_align_block_size_v9(
            topk_ids: torch.Tensor,
            block_size: int,
            num_experts: int,
            expert_map: Optional[torch.Tensor] = None,
            pad_sorted_ids: bool = False,
        ) -> AlignResult:
            return _align(
                contract, topk_ids, block_size, num_experts, expert_map,
                pad_sorted_ids, False, False,
            )

        fn = moe_align_block_size_v9
    fn.__name__ = fn.__qualname__ = "moe_align_block_size"
    fn.__doc__ = f"vllm-moe-align-plugin's moe_align_block_size ({contract.name} contract)."
    fn.__module__ = __name__
    return fn


def op_level_for(contract: Contract) -> Callable[..., None]:
    """``vllm._custom_ops.moe_align_block_size`` of ``contract``'s line: writes
    into caller buffers; an ``expert_map`` makes the op map ids while counting
    and drop routes of non-local experts, as vLLM's op does."""

    def call(
        topk_ids: torch.Tensor,
        num_experts: int,
        block_size: int,
        sorted_token_ids: torch.Tensor,
        experts_ids: torch.Tensor,
        num_tokens_post_pad: torch.Tensor,
        expert_map: Optional[torch.Tensor],
        scatter_idx: Optional[torch.Tensor],
    ) -> None:
        if not isinstance(topk_ids, torch.Tensor):
            raise TypeError(f"topk_ids must be a torch.Tensor, got {type(topk_ids).__name__}")
        if expert_map is not None and not isinstance(expert_map, torch.Tensor):
            raise TypeError(
                f"expert_map must be a torch.Tensor or None, got {type(expert_map).__name__}"
            )
        _ALIGN_OUT(
            topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
            num_tokens_post_pad, expert_map, scatter_idx, expert_map is not None,
            contract.expert_ids_tail,
        )

    if contract.has_scatter_idx:

        def moe_align_block_size_op_v33(
            topk_ids: torch.Tensor,
            num_experts: int,
            block_size: int,
            sorted_token_ids: torch.Tensor,
            experts_ids: torch.Tensor,
            num_tokens_post_pad: torch.Tensor,
            expert_map: Optional[torch.Tensor] = None,
            scatter_idx: Optional[torch.Tensor] = None,
        ) -> None:
            call(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                 num_tokens_post_pad, expert_map, scatter_idx)

        fn: Callable[..., None] = moe_align_block_size_op_v33
    elif contract.has_ignore_invalid_experts:

        def moe_align_block_size_op_v13(
            topk_ids: torch.Tensor,
            num_experts: int,
            block_size: int,
            sorted_token_ids: torch.Tensor,
            experts_ids: torch.Tensor,
            num_tokens_post_pad: torch.Tensor,
            expert_map: Optional[torch.Tensor] = None,
        ) -> None:
            call(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                 num_tokens_post_pad, expert_map, None)

        fn = moe_align_block_size_op_v13
    else:

        def moe_align_block_size_op_v9(
            topk_ids: torch.Tensor,
            num_experts: int,
            block_size: int,
            sorted_token_ids: torch.Tensor,
            experts_ids: torch.Tensor,
            num_tokens_post_pad: torch.Tensor,
        ) -> None:
            call(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                 num_tokens_post_pad, None, None)

        fn = moe_align_block_size_op_v9
    fn.__name__ = fn.__qualname__ = "moe_align_block_size"
    fn.__doc__ = f"vllm-moe-align-plugin's op-level moe_align_block_size ({contract.name})."
    fn.__module__ = __name__
    return fn


if _ops.available():
    _ALIGN = torch.ops.vllm_moe_align.moe_align_block_size.default
    _ALIGN_OUT = torch.ops.vllm_moe_align.moe_align_block_size_out.default
else:

    def _ALIGN(*args: object, **kwargs: object) -> tuple[torch.Tensor, ...]:  # noqa: N802
        _ops.require()
        raise AssertionError("unreachable")

    _ALIGN_OUT = _ALIGN  # type: ignore[assignment]
