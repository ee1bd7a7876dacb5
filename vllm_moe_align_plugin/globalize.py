"""vLLM 0.33's ``fused_globalize_align_block_size`` on the plugin's op.

``fused_globalize_align_block_size`` has vLLM 0.33's signature and returns
the same tuple; the contract is ``globalize_reference``'s (its module
docstring): the local expert ids in ``recv_topk_idx`` (int64 ``[N, topk]``)
become global ids in place (``-1`` for a dropped route or a row past
``psum_recv_per_rank[-1]``), and the valid routes are aligned by their local
id into blocks of ``block_size``. Routes ascend inside each expert's
segment, so the outputs are deterministic and equal the oracle bit for bit.

Each call checks the Python types here, allocates the outputs with
``torch.empty`` (the kernel writes every element) and makes one call into
C++ (``torch.ops.vllm_moe_align.fused_globalize_align_block_size_out``,
csrc/schema.h), which checks everything else, naming the argument. The op
has a CPU kernel and, in a build with CUDA kernels, a CUDA one (one launch
up to 1024 routes, two above; no host sync, so CUDA graphs capture it); a
CUDA tensor in a build without them raises NotImplementedError.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from . import devices
from ._ops import checks, library
from .globalize_reference import buffer_sizes
from .messages import describe

#: the op's name, as the dispatcher knows it
OP_NAME = "vllm_moe_align::fused_globalize_align_block_size_out"


def _check_tensor(name: str, value: object) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(value)}")


def fused_globalize_align_block_size(
    recv_topk_idx: torch.Tensor,
    psum_recv_per_rank: torch.Tensor,
    rank_expert_offset: int,
    global_num_experts: int,
    local_num_experts: int,
    block_size: int,
    return_scatter_idx: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Globalizes ``recv_topk_idx`` in place and aligns its valid routes by
    local expert (vLLM 0.33's contract: ``globalize_reference``).

    ``recv_topk_idx``: int64 ``[N, topk]`` local ids (-1: another rank's);
    only its first ``psum_recv_per_rank[-1]`` rows (int32 ``[P]``, read on
    the device) are real. A route is valid when its local id, read as a
    32-bit int, is in ``[0, local_num_experts)``, its global id (local id +
    ``rank_expert_offset``) is below ``global_num_experts`` and its row is
    real. ``local_num_experts`` is at most 1024, ``block_size`` at least 1.

    Returns ``(recv_topk_idx, sorted_ids, expert_ids, num_tokens_post_pad)``
    (the first is the argument itself, holding global ids, -1 elsewhere; the
    others int32, ``expert_ids`` holding *local* ids and -1 past the used
    blocks), plus ``scatter_idx`` (int32 ``[numel, 1]``: ``i`` for a valid
    route, -1 otherwise) when ``return_scatter_idx``; all on
    ``recv_topk_idx.device``. NotImplementedError for a CUDA tensor in a
    build without CUDA kernels.
    """
    _check_tensor("recv_topk_idx", recv_topk_idx)
    _check_tensor("psum_recv_per_rank", psum_recv_per_rank)
    rank_expert_offset = checks.check_int("rank_expert_offset", rank_expert_offset)
    global_num_experts = checks.check_int("global_num_experts", global_num_experts)
    local_num_experts = checks.check_int("local_num_experts", local_num_experts)
    block_size = checks.check_int("block_size", block_size)
    device = recv_topk_idx.device
    if device.type == "cuda" and not _CUDA_KERNEL:
        raise NotImplementedError(
            f"fused_globalize_align_block_size: this build of vllm_moe_align_plugin has no CUDA "
            f"kernels (recv_topk_idx is on {device}); use vLLM's own function on this device"
        )

    numel = recv_topk_idx.numel()
    sorted_size, num_blocks = buffer_sizes(numel, local_num_experts, block_size) or (0, 0)
    sorted_ids = torch.empty((sorted_size,), dtype=torch.int32, device=device)
    expert_ids = torch.empty((num_blocks,), dtype=torch.int32, device=device)
    num_tokens_post_pad = torch.empty((1,), dtype=torch.int32, device=device)
    scatter_idx = (
        torch.empty((numel, 1), dtype=torch.int32, device=device) if return_scatter_idx else None
    )
    try:
        _GLOBALIZE_OUT(
            recv_topk_idx, psum_recv_per_rank, rank_expert_offset, global_num_experts,
            local_num_experts, block_size, sorted_ids, expert_ids, num_tokens_post_pad, scatter_idx,
        )
    except ValueError as exc:
        raise checks.typed_error(exc) from None
    outputs = (recv_topk_idx, sorted_ids, expert_ids, num_tokens_post_pad)
    return (*outputs, scatter_idx) if scatter_idx is not None else outputs


def _served(recv_topk_idx: object, fallback: Callable[..., Any], run: Callable[[], Any],
            fallback_args: tuple[object, ...]) -> Any:
    """``run()``, or ``fallback(*fallback_args)`` on a device the plugin
    cannot serve (decided once per device by ``devices``, as for the align
    drop-in; ``api`` module docstring). Both ops fail before writing
    anything on such a device, so the fallback sees the ids unchanged."""
    if devices.ELSEWHERE and devices.served_elsewhere(recv_topk_idx):
        return fallback(*fallback_args)
    try:
        return run()
    except (NotImplementedError, RuntimeError):
        if devices.plugin_runs_on_tensor(recv_topk_idx):
            raise
    return fallback(*fallback_args)


GlobalizeFn = Callable[..., tuple[torch.Tensor, ...]]


def drop_in_for(fallback: GlobalizeFn) -> GlobalizeFn:
    """vLLM 0.33's ``fused_globalize_align_block_size`` (same signature)
    running the plugin's op, ``fallback`` (vLLM's function) on devices the
    plugin cannot serve."""

    def fused_globalize_align_block_size_or_vllms(
        recv_topk_idx: torch.Tensor,
        psum_recv_per_rank: torch.Tensor,
        rank_expert_offset: int,
        global_num_experts: int,
        local_num_experts: int,
        block_size: int,
        return_scatter_idx: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        args = (recv_topk_idx, psum_recv_per_rank, rank_expert_offset, global_num_experts,
                local_num_experts, block_size, return_scatter_idx)
        return _served(recv_topk_idx, fallback, lambda: fused_globalize_align_block_size(*args), args)

    fused_globalize_align_block_size_or_vllms.__name__ = "fused_globalize_align_block_size"
    return fused_globalize_align_block_size_or_vllms


def op_level_for(fallback: Callable[..., None]) -> Callable[..., None]:
    """vLLM 0.33's ``vllm._custom_ops.fused_globalize_align_block_size`` (the
    caller's buffers, same signature) running the plugin's op, ``fallback``
    on devices the plugin cannot serve."""

    def fused_globalize_align_block_size_out(
        topk_idx: torch.Tensor,
        psum: torch.Tensor,
        rank_expert_offset: int,
        global_num_experts: int,
        local_num_experts: int,
        block_size: int,
        sorted_ids: torch.Tensor,
        expert_ids: torch.Tensor,
        num_tokens_post_pad: torch.Tensor,
        scatter_idx: Optional[torch.Tensor] = None,
    ) -> None:
        args = (topk_idx, psum, rank_expert_offset, global_num_experts, local_num_experts,
                block_size, sorted_ids, expert_ids, num_tokens_post_pad, scatter_idx)
        _served(topk_idx, fallback, lambda: _out(*args), args)

    fused_globalize_align_block_size_out.__name__ = "fused_globalize_align_block_size"
    return fused_globalize_align_block_size_out


def _out(recv_topk_idx: object, psum_recv_per_rank: object, *rest: Any) -> None:
    """The out-variant with the function's Python checks and error types."""
    _check_tensor("recv_topk_idx", recv_topk_idx)
    _check_tensor("psum_recv_per_rank", psum_recv_per_rank)
    ints = [checks.check_int(name, value) for name, value in zip(_INT_NAMES, rest[:4])]
    try:
        _GLOBALIZE_OUT(recv_topk_idx, psum_recv_per_rank, *ints, *rest[4:])
    except ValueError as exc:
        raise checks.typed_error(exc) from None


_INT_NAMES = ("rank_expert_offset", "global_num_experts", "local_num_experts", "block_size")


if library.available():
    _GLOBALIZE_OUT = torch.ops.vllm_moe_align.fused_globalize_align_block_size_out.default
    #: whether this build has a CUDA kernel for the op
    _CUDA_KERNEL = torch._C._dispatch_has_kernel_for_dispatch_key(OP_NAME, "CUDA")
else:

    def _GLOBALIZE_OUT(*args: object) -> None:  # noqa: N802
        library.require()

    _CUDA_KERNEL = False
