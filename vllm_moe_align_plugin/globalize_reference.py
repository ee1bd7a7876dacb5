"""Pure-torch oracle of vLLM's ``fused_globalize_align_block_size``: slow, obvious, exact.

vLLM 0.33.0 added this function (module
``vllm.model_executor.layers.fused_moe.fused_globalize_align_block_size``,
CUDA op ``torch.ops._moe_C.fused_globalize_align_block_size``, built for CUDA
only); no release before 0.33 has it. It does in one launch what the DeepEP-v2
decode path did in two steps: turn the received local expert ids into global
ones, then ``moe_align_block_size`` them with the rank's ``expert_map``.

The contract, as this module computes it:

1. Inputs. ``recv_topk_idx``: int64 ``[N, topk]``, contiguous, holding *local*
   expert ids (``-1`` for a slot routed to another rank); only its first
   ``num_recv`` rows are real, the rest is whatever the receive buffer held.
   ``psum_recv_per_rank``: int32 1-D ``[P]``, same device; only its last
   element is read, as ``num_recv``. ``rank_expert_offset``: the global id of
   this rank's local expert 0. ``global_num_experts`` and
   ``local_num_experts`` (at most 1024): expert counts. ``block_size``: the
   tile height ``B``.
2. Validity. Route ``i`` (flat index into ``recv_topk_idx``, row ``i // topk``)
   has the local id ``v``, read as a 32-bit int (the kernel truncates the
   int64), and the global id ``g = v + rank_expert_offset``. It is valid when
   ``0 <= v < local_num_experts``, ``g < global_num_experts`` and its row is
   ``< num_recv``. So every slot of a row ``>= num_recv`` is invalid, whatever
   it holds; ``num_recv > N`` makes every row real.
3. In place: ``recv_topk_idx[i]`` becomes ``g`` for a valid route, ``-1`` for
   every other one. The same tensor object is output 0.
4. Sizes, from ``numel = N * topk`` and the *local* expert count ``L``:
   ``M = numel + L * (B - 1)``, capped at ``numel * B`` when ``numel < L``;
   ``sorted_ids`` has ``M`` entries, ``expert_ids`` ``ceil(M / B)``.
   (``moe_align_block_size`` sizes the same buffers by the global count.)
5. Valid routes are binned by their *local* id. Expert ``e`` with ``c_e``
   routes owns ``ceil(c_e / B) * B`` slots, segments following each other in
   expert order from slot 0; ``num_tokens_post_pad`` (int32 ``[1]``) is the
   total ``T``.
6. ``sorted_ids`` (int32 ``[M]``): each segment holds its routes' flat indices,
   then ``numel`` up to its end; slots ``[T, M)`` hold ``numel`` too.
7. ``expert_ids`` (int32 ``[ceil(M / B)]``): the *local* id of the expert
   owning block ``b`` (slots ``[b * B, (b + 1) * B)``) for ``b < T / B``, ``-1``
   after. So ``expert_ids`` is local while ``recv_topk_idx`` comes back global.
8. With ``return_scatter_idx``, a fifth output ``scatter_idx`` (int32
   ``[numel, 1]``): ``i`` for a valid route, ``-1`` for the others.

Returns ``(recv_topk_idx, sorted_ids, expert_ids, num_tokens_post_pad)``, plus
``scatter_idx`` when asked, all on ``recv_topk_idx.device``.

Order inside a segment: vLLM's kernel places routes with atomic cursors, so
their order within one expert's segment is unspecified (only the set is
fixed). This oracle puts them in ascending route order, the plugin's
deterministic order; a comparison with vLLM's own op must compare each
segment as a set.

Differences from the two-step chain it replaces: the chain's globalize step
does not know ``local_num_experts``, so it keeps a local id ``>= L`` whose
global id is ``< global_num_experts`` (as a foreign global id, which the align
step then ignores); the fused op writes ``-1`` there. Everything else agrees on
the used part (``sorted_ids[:T]`` up to order inside segments,
``expert_ids[:T / B]``, ``num_tokens_post_pad``, ``scatter_idx``).

vLLM reads ``num_recv`` on the device (CUDA-graph safe) and checks only the
id dtype and ``local_num_experts <= 1024``; this oracle reads it on the
device too, but computes sizes on the host, and refuses with a ValueError
the inputs whose meaning vLLM leaves undefined (another dtype, shape, layout
or device of either tensor, ``block_size < 1``). Like the kernel it assumes
every count, id and size fits an int32.
"""

from __future__ import annotations

from typing import Optional

import torch

from .contract import V0_31
from .messages import preview
from .reference import moe_align_block_size_reference

#: the align rules whose buffer sizes, padding and tail the fused op has
#: (over the local experts)
SIZE_RULES = V0_31
#: vLLM's limit on ``local_num_experts``
MAX_LOCAL_EXPERTS = 1024
_INT32_MAX = 2**31 - 1


def buffer_sizes(numel: int, local_num_experts: int, block_size: int) -> Optional[tuple[int, int]]:
    """``(len(sorted_ids), len(expert_ids))`` for ``numel`` routes: ``numel +
    L * (B - 1)`` slots, capped at ``numel * B`` when ``numel < L``, and one
    expert id per block of them. None for arguments the op refuses (it names
    them; the function then allocates empty buffers, nothing negative or huge)."""
    if not 0 <= local_num_experts <= MAX_LOCAL_EXPERTS or block_size < 1:
        return None
    size = SIZE_RULES.max_num_tokens_padded(numel, local_num_experts, block_size, False)
    if size > _INT32_MAX:
        return None
    return size, -(-size // block_size)


def fused_globalize_align_block_size_reference(
    recv_topk_idx: torch.Tensor,
    psum_recv_per_rank: torch.Tensor,
    rank_expert_offset: int,
    global_num_experts: int,
    local_num_experts: int,
    block_size: int,
    return_scatter_idx: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Globalizes ``recv_topk_idx`` in place and returns ``(recv_topk_idx,
    sorted_ids, expert_ids, num_tokens_post_pad[, scatter_idx])`` (see the
    module docstring)."""
    _check(recv_topk_idx, psum_recv_per_rank, local_num_experts, block_size)
    device = recv_topk_idx.device

    # 2. validity, on the device: num_recv stays a 0-d tensor
    local = recv_topk_idx.to(torch.int32).to(torch.int64)
    glob = local + rank_expert_offset
    num_recv = psum_recv_per_rank[-1].to(torch.int64)
    row_is_real = (torch.arange(local.shape[0], device=device) < num_recv).unsqueeze(1)
    valid = (local >= 0) & (local < local_num_experts) & (glob < global_num_experts) & row_is_real

    # 4.-8. align the valid local ids over the local experts; -1 drops a route.
    # The 0.31-0.34 align rules give the new op's sizes, padding and tail here.
    sorted_ids, expert_ids, num_tokens_post_pad, scatter_idx = moe_align_block_size_reference(
        torch.where(valid, local, -1),
        block_size,
        local_num_experts,
        return_scatter_idx=True,
        contract=SIZE_RULES,
    )

    # 3. in place, last: everything above read the local ids
    recv_topk_idx.copy_(torch.where(valid, glob, -1))

    outputs = (recv_topk_idx, sorted_ids, expert_ids, num_tokens_post_pad)
    return (*outputs, scatter_idx) if return_scatter_idx else outputs


def _check(
    recv_topk_idx: torch.Tensor,
    psum_recv_per_rank: torch.Tensor,
    local_num_experts: int,
    block_size: int,
) -> None:
    ids, psum = recv_topk_idx, psum_recv_per_rank
    if ids.dtype != torch.int64 or ids.dim() != 2 or not ids.is_contiguous():
        raise ValueError(
            f"recv_topk_idx must be a contiguous 2-D int64 tensor, got {ids.dtype} {tuple(ids.shape)}"
        )
    if psum.dtype != torch.int32 or psum.dim() != 1 or psum.numel() < 1 or not psum.is_contiguous():
        raise ValueError(
            "psum_recv_per_rank must be a contiguous non-empty 1-D int32 tensor, "
            f"got {psum.dtype} {tuple(psum.shape)}"
        )
    if psum.device != ids.device:
        raise ValueError(f"psum_recv_per_rank is on {psum.device}, recv_topk_idx on {ids.device}")
    if not 0 <= local_num_experts <= MAX_LOCAL_EXPERTS:
        raise ValueError(
            f"local_num_experts must be in [0, {MAX_LOCAL_EXPERTS}], got {preview(local_num_experts)}"
        )
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {preview(block_size)}")
