"""Shared test helpers: devices, random routes, poisoned buffers, exact
compare, environment knobs, and one call of the op through each of its ways in."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Optional

import torch

from vllm_moe_align_plugin import reference
from vllm_moe_align_plugin._ops import library
from vllm_moe_align_plugin.api import drop_in_for, op_level_for
from vllm_moe_align_plugin.contract import NEWEST, Contract

HAS_CUDA = torch.cuda.is_available() and library.has_backend("cuda")
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
POISON = -777_777  # a value no output slot may keep


def env_int(name: str, default: int) -> int:
    """The integer in environment variable ``name``, ``default`` when unset or blank."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def random_routes(
    numel: int,
    num_experts: int,
    *,
    top_k: int = 1,
    dtype: torch.dtype = torch.int32,
    invalid_frac: float = 0.0,
    skew: bool = False,
    seed: int = 0,
    device: str = "cpu",
) -> torch.Tensor:
    """topk_ids of ``numel`` routes shaped [numel // top_k, top_k] (1-D when
    top_k does not divide numel). ``skew`` draws from a few hot experts;
    ``invalid_frac`` of the routes get ids outside [0, num_experts)."""
    g = torch.Generator().manual_seed(seed)
    if skew:
        hot = torch.randint(0, num_experts, (max(1, num_experts // 16),), generator=g)
        ids = hot[torch.randint(0, hot.numel(), (numel,), generator=g)]
    else:
        ids = torch.randint(0, num_experts, (numel,), generator=g)
    if invalid_frac > 0 and numel > 0:
        bad = torch.rand(numel, generator=g) < invalid_frac
        wrong = torch.where(
            torch.rand(numel, generator=g) < 0.5,
            -1 - torch.randint(0, 5, (numel,), generator=g),
            num_experts + torch.randint(0, 5, (numel,), generator=g),
        )
        ids = torch.where(bad, wrong, ids)
    ids = ids.to(dtype)
    if top_k > 1 and numel % top_k == 0:
        ids = ids.view(numel // top_k, top_k)
    return ids.to(device)


def random_expert_map(num_experts: int, *, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """An expert-parallel map: about half the experts local (ids 0..L-1 in a
    random order), the rest -1 (``reference.random_expert_map``, seeded)."""
    g = torch.Generator().manual_seed(seed + 1)
    return reference.random_expert_map(num_experts, generator=g).to(device)


def poisoned(size: int, device: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    return torch.full(shape or (size,), POISON, dtype=torch.int32, device=device)


def assert_same(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...], what: str = "") -> None:
    """Bit-for-bit equality of every output (shape, dtype, values)."""
    names = ("sorted_token_ids", "expert_ids", "num_tokens_post_pad", "scatter_idx")
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for name, g, w in zip(names, got, want):
        g = g.cpu()
        w = w.cpu()
        assert g.dtype == w.dtype, f"{what} {name}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{what} {name}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        if not torch.equal(g, w):
            bad = (g.flatten() != w.flatten()).nonzero().flatten()[:10].tolist()
            raise AssertionError(
                f"{what} {name} differs at {bad}: got {g.flatten()[bad].tolist()}, "
                f"want {w.flatten()[bad].tolist()}"
            )


# The ways into the op: vLLM's Python-level function (the drop-in, positional or
# by keyword), the allocating op, the out-variant, vLLM's op-level wrapper
# (caller buffers).
APIS = ("drop_in", "drop_in_kwargs", "alloc_op", "out_op", "op_level")
_DROP_IN_NAMES = ("topk_ids", "block_size", "num_experts", "expert_map", "pad_sorted_ids",
                  "ignore_invalid_experts")


def call_api(
    api: str,
    ids: torch.Tensor,
    num_experts: int,
    block_size: int,
    expert_map: Optional[torch.Tensor] = None,
    *,
    contract: Contract = NEWEST,
    pad_sorted_ids: bool = False,
    ignore_invalid_experts: bool = False,
    return_scatter_idx: bool = False,
    size: Optional[int] = None,
    slack: int = 0,
) -> tuple[torch.Tensor, ...]:
    """The plugin's result through ``api`` (one of ``APIS``) under ``contract``,
    on ids' device; arguments a contract's line lacks are left out. ``size``:
    the allocating op's ``max_num_tokens_padded`` or the caller's
    ``sorted_token_ids`` slots (default: the contract's rule, plus ``slack``
    slots, with ``slack // 16 + 1`` extra ``expert_ids`` blocks when ``slack``).
    Caller buffers start poisoned; the results are those buffers, with
    ``scatter_idx`` when ``return_scatter_idx``."""
    if size is None:
        size = contract.max_num_tokens_padded(ids.numel(), num_experts, max(block_size, 1),
                                              pad_sorted_ids) + slack
    ops = torch.ops.vllm_moe_align
    if api in ("drop_in", "drop_in_kwargs"):
        args: list[object] = [ids, block_size, num_experts, expert_map, pad_sorted_ids]
        if contract.has_ignore_invalid_experts:
            args.append(ignore_invalid_experts)
        kwargs: dict[str, object] = {"return_scatter_idx": True} if return_scatter_idx else {}
        if api == "drop_in_kwargs":
            kwargs.update(zip(_DROP_IN_NAMES, args))
            args = []
        return drop_in_for(contract)(*args, **kwargs)
    if api == "alloc_op":
        return ops.moe_align_block_size(ids, num_experts, block_size, size, expert_map,
                                        ignore_invalid_experts, contract.expert_ids_tail,
                                        return_scatter_idx)
    device = ids.device.type
    blocks = -(-size // max(block_size, 1)) + (slack // 16 + 1 if slack else 0)
    out = (poisoned(size, device), poisoned(blocks, device), poisoned(1, device))
    scatter = poisoned(0, device, (ids.numel(), 1)) if return_scatter_idx else None
    if api == "out_op":
        ops.moe_align_block_size_out(ids, num_experts, block_size, *out, expert_map, scatter,
                                     ignore_invalid_experts, contract.expert_ids_tail)
    elif api == "op_level":
        extra = ((expert_map, scatter) if contract.has_scatter_idx
                 else (expert_map,) if contract.has_ignore_invalid_experts else ())
        op_level_for(contract)(ids, num_experts, block_size, *out, *extra)
    else:
        raise ValueError(f"unknown api {api!r}: one of {APIS}")
    return out + ((scatter,) if scatter is not None else ())


#: vLLM 0.33's test grid of fused_globalize_align_block_size: routes per rank
#: x top-k x how the ids are drawn, then block size x local experts x this
#: rank's place among ``ep_size`` ranks
GLOBALIZE_GRID = SimpleNamespace(
    ns=[1, 7, 64, 257], topks=[1, 6, 8, 16], fills=["rand", "all_local", "all_nonlocal", "single"],
    block_sizes=[16, 32, 64, 128], local_es=[28, 32], ranks={"first": 0, "mid": 2, "last": 3}, ep_size=4,
)
