"""Pure-torch oracle of ``moe_align_block_size``: slow, obvious, exact.

It is the documentation of what the op computes and the reference every test
compares against, bit for bit (route indices ascend inside each expert's
segment, which a stable sort gives for free).

Given routes ``topk_ids.flatten()`` (route ``i`` is its flat index):

1. Each route gets a *bin*: its expert id, or, with ``expert_map`` and
   ``ignore_invalid_experts``, its local id. Ids outside ``[0, num_experts)``
   and (in that mode) experts mapped to -1 are dropped.
2. Expert ``e`` with ``c_e`` routes owns a segment of ``ceil(c_e / B) * B``
   slots; segments follow each other in expert order from slot 0.
   ``num_tokens_post_pad`` is their total ``P``.
3. ``sorted_token_ids``: each segment holds its routes in ascending order, then
   ``numel`` (padding) to its end; slots ``[P, M)`` hold ``numel``.
4. ``expert_ids[b]``: the expert owning block ``b``; past ``P / B``, the
   contract's tail value. Without ``ignore_invalid_experts``, an
   ``expert_map`` is applied afterwards: ``expert_ids = expert_map[expert_ids]``.
5. ``scatter_idx[i] = i`` for a counted route, ``-1`` for a dropped one.

Also the expert-parallel maps the tests, the CLI and the benchmarks feed the op
(``random_expert_map``, ``rank_expert_map``).
"""

from __future__ import annotations

from typing import Optional

import torch

from .contract import NEWEST, Contract
from .messages import preview


def route_bins(
    flat: torch.Tensor, num_experts: int, expert_map: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Each route's bin, for int64 ids ``flat``: the id (with ``expert_map``:
    its local id, the map applied while counting) where that lies in
    ``[0, num_experts)``, else ``num_experts`` (the route is dropped)."""
    E = num_experts
    valid = (flat >= 0) & (flat < E)
    bins = flat
    if expert_map is not None:
        local = expert_map.to(torch.int64)[flat.clamp(0, E - 1)]
        valid &= (local >= 0) & (local < E)
        bins = local
    return torch.where(valid, bins, torch.full_like(bins, E))


def moe_align_block_size_reference(
    topk_ids: torch.Tensor,
    block_size: int,
    num_experts: int,
    expert_map: Optional[torch.Tensor] = None,
    pad_sorted_ids: bool = False,
    ignore_invalid_experts: bool = False,
    return_scatter_idx: bool = False,
    contract: Contract = NEWEST,
) -> tuple[torch.Tensor, ...]:
    """Returns ``(sorted_token_ids, expert_ids, num_tokens_post_pad[, scatter_idx])``
    on ``topk_ids.device``, under ``contract``."""
    if ignore_invalid_experts and not contract.has_ignore_invalid_experts:
        raise ValueError(f"{contract.name} has no ignore_invalid_experts")
    if return_scatter_idx and not contract.has_scatter_idx:
        raise ValueError(f"{contract.name} has no return_scatter_idx")
    if return_scatter_idx and expert_map is not None and not ignore_invalid_experts:
        raise ValueError("return_scatter_idx with expert_map requires ignore_invalid_experts")
    device = topk_ids.device
    E, B = num_experts, block_size
    flat = topk_ids.reshape(-1).to(torch.int64)
    numel = flat.numel()
    size = contract.max_num_tokens_padded(numel, E, B, pad_sorted_ids)

    # 1. bins
    bins = route_bins(flat, E, expert_map if ignore_invalid_experts else None)
    valid = bins < E

    # 2. segments
    counts = torch.bincount(bins, minlength=E + 1)[:E]
    padded = (counts + B - 1) // B * B
    seg_start = torch.cumsum(padded, 0) - padded
    total = int(padded.sum())

    # 3. sorted_token_ids: stable sort by bin puts dropped routes (bin E) last
    order = torch.sort(bins, stable=True).indices
    kept = order[: int(valid.sum())]
    kept_bins = bins[kept]
    first_of_bin = torch.cumsum(counts, 0) - counts
    rank = torch.arange(kept.numel(), device=device) - first_of_bin[kept_bins]
    sorted_ids = torch.full((size,), numel, dtype=torch.int32, device=device)
    sorted_ids[seg_start[kept_bins] + rank] = kept.to(torch.int32)

    # 4. expert_ids
    num_blocks = (size + B - 1) // B
    expert_ids = torch.full(
        (num_blocks,), contract.expert_ids_tail, dtype=torch.int64, device=device
    )
    owners = torch.repeat_interleave(torch.arange(E, device=device), padded // B)
    expert_ids[: owners.numel()] = owners
    if expert_map is not None and not ignore_invalid_experts:
        expert_ids = expert_map.to(torch.int64)[expert_ids]  # -1 indexes the last entry
    expert_ids = expert_ids.to(torch.int32)

    post_pad = torch.tensor([total], dtype=torch.int32, device=device)
    if not return_scatter_idx:
        return sorted_ids, expert_ids, post_pad
    scatter_idx = torch.where(
        valid, torch.arange(numel, device=device), torch.full_like(flat, -1)
    ).to(torch.int32).view(numel, 1)
    return sorted_ids, expert_ids, post_pad, scatter_idx


# --------------------------------------------------------------------------- expert maps


def random_expert_map(
    num_experts: int, *, generator: torch.Generator, local_fraction: float = 0.5
) -> torch.Tensor:
    """A random expert-parallel ``expert_map``: int32 ``[num_experts]`` on the CPU.

    Each expert is local with probability ``local_fraction``; the ``L`` local
    experts get the local ids ``0 .. L-1`` in a random order, every other
    expert ``-1``. Draws ``torch.rand(num_experts)`` then ``torch.randperm(L)``
    from ``generator``, so the same generator state gives the same map."""
    local = torch.rand(num_experts, generator=generator) < local_fraction
    emap = torch.full((num_experts,), -1, dtype=torch.int32)
    emap[local] = torch.randperm(int(local.sum()), generator=generator).to(torch.int32)
    return emap


def rank_expert_map(num_experts: int, rank: int, ranks: int) -> torch.Tensor:
    """The ``expert_map`` of expert-parallel rank ``rank`` of ``ranks`` when
    each rank owns a contiguous range: int32 ``[num_experts]`` on the CPU.

    Ranks own ``ceil(num_experts / ranks)`` experts each, in rank order (the
    last ranks may own fewer, or none); rank ``r``'s experts get the local ids
    ``0, 1, ...`` in global order, every other expert ``-1``. For example
    ``rank_expert_map(6, 1, 2)`` is ``[-1, -1, -1, 0, 1, 2]``."""
    if ranks < 1 or not 0 <= rank < ranks:
        raise ValueError(f"rank {preview(rank)} of {preview(ranks)}: need 0 <= rank < ranks")
    per = -(-num_experts // ranks)
    first, last = min(rank * per, num_experts), min((rank + 1) * per, num_experts)
    emap = torch.full((num_experts,), -1, dtype=torch.int32)
    emap[first:last] = torch.arange(last - first, dtype=torch.int32)
    return emap
