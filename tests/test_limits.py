"""The op's limits: the largest num_experts, block_size and number of routes it
supports are enforced (just beyond each: a ValueError naming the argument, at
each: the reference's result) and within them no index can overflow int32.

The at-the-limit run of 2^30 routes needs about 11 GB of host memory (and as
much GPU memory on CUDA); it is opt-in: ``VLLM_MOE_ALIGN_LIMITS_FULL=1``.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Optional

import pytest
import torch
from helpers import assert_same, call_api, poisoned, random_expert_map, random_routes

from vllm_moe_align_plugin import contract as C
from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

# The limits the README states; test_enforced_limits_are_the_stated_ones
# reads the enforced ones back from the op's own messages.
MAX_EXPERTS = 4096
MAX_BLOCK_SIZE = 1024
MAX_ROUTES = 2**30
INT32_MAX = 2**31 - 1

FULL_ENV = "VLLM_MOE_ALIGN_LIMITS_FULL"
OPS = torch.ops.vllm_moe_align

# The four ways into the op: vLLM's Python-level function (drop-in), the
# allocating op, the out-variant, vLLM's op-level wrapper (caller buffers).
APIS = ["drop_in", "alloc_op", "out_op", "op_level"]


def call(api: str, ids: torch.Tensor, num_experts: int, block_size: int,
         emap: Optional[torch.Tensor] = None, tiny_buffers: bool = False) -> tuple[torch.Tensor, ...]:
    """Runs the op through ``api`` (``helpers.call_api``, vLLM 0.33's line);
    sizes by vLLM 0.33's rule (at least one element each), caller buffers of
    one element each with ``tiny_buffers`` (for calls refused before the
    buffers are looked at)."""
    size = max(1, C.NEWEST.max_num_tokens_padded(ids.numel(), num_experts, max(block_size, 1), False))
    if tiny_buffers and api in ("out_op", "op_level"):
        size = 1
    return call_api(api, ids, num_experts, block_size, emap,
                    ignore_invalid_experts=emap is not None, size=size)


def huge_ids(numel: int, device: str) -> torch.Tensor:
    """``numel`` routes of expert 0 that take no memory (a stride-0 view)."""
    return torch.zeros(1, dtype=torch.int8, device=device).expand(numel)


def error_of(fn: Callable[[], object]) -> str:
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


def test_enforced_limits_are_the_stated_ones() -> None:
    """The bounds in the op's own error messages are the stated limits."""
    ids = torch.zeros(4, dtype=torch.int32)
    msg = error_of(lambda: moe_align_block_size(ids, 16, 10**6))
    assert re.search(r"num_experts must be in \[1, (\d+)\]", msg).group(1) == str(MAX_EXPERTS), msg
    msg = error_of(lambda: moe_align_block_size(ids, 10**6, 8))
    assert re.search(r"block_size must be in \[1, (\d+)\]", msg).group(1) == str(MAX_BLOCK_SIZE), msg
    msg = error_of(lambda: call("out_op", huge_ids(MAX_ROUTES + 1, "cpu"), 8, 16, tiny_buffers=True))
    assert re.search(r"at most (\d+) are supported", msg).group(1) == str(MAX_ROUTES), msg


@pytest.mark.parametrize("pad_sorted_ids", [False, True])
@pytest.mark.parametrize("contract", C.ALL, ids=lambda c: c.name)
def test_int32_cannot_overflow_within_the_limits(contract: C.Contract, pad_sorted_ids: bool) -> None:
    """At the largest numel, num_experts and block_size together, every index
    and count the op stores or computes fits in int32: the sorted size
    numel + E * (B - 1) (rounded up to a block with pad_sorted_ids), the block
    count, the padding value (numel), the largest route index and slot."""
    numel, E, B = MAX_ROUTES, MAX_EXPERTS, MAX_BLOCK_SIZE
    worst = numel + E * (B - 1)
    assert worst == 1_077_932_032 and worst <= INT32_MAX
    size = contract.max_num_tokens_padded(numel, E, B, pad_sorted_ids)
    assert worst <= size <= worst + B - 1 <= INT32_MAX
    assert -(-size // B) <= INT32_MAX
    assert numel <= INT32_MAX  # the padding value of sorted_token_ids
    # Sizes grow with each of numel, E and B, so the corner is the worst case:
    for n, e, b in [(numel, 1, 1), (1, E, B), (numel, E, 1), (numel, 1, B), (0, E, B)]:
        assert contract.max_num_tokens_padded(n, e, b, pad_sorted_ids) <= size


def test_op_sizes_at_the_limits_fit_int32() -> None:
    """The op's own size computation at the limits (read from its messages,
    with buffers too small on purpose): the slots and blocks it needs for 2^30
    routes, E = 4096, B = 1024 fit in int32 and match the contract's rule."""
    numel, E, B = MAX_ROUTES, MAX_EXPERTS, MAX_BLOCK_SIZE
    ids = huge_ids(numel, "cpu")
    small = poisoned(1, "cpu")
    msg = error_of(lambda: OPS.moe_align_block_size_out(ids, E, B, small, poisoned(1, "cpu"),
                                                        poisoned(1, "cpu")))
    need = int(re.search(r"at least (\d+) are needed", msg).group(1))
    assert need == min(numel + E * (B - 1), numel * B) <= INT32_MAX
    sorted_ids = torch.empty(need, dtype=torch.int32)  # never touched: the op refuses first
    msg = error_of(lambda: OPS.moe_align_block_size_out(ids, E, B, sorted_ids, poisoned(1, "cpu"),
                                                        poisoned(1, "cpu")))
    need_blocks = int(re.search(r"at least (\d+) are needed", msg).group(1))
    assert need_blocks == -(-need // B) <= INT32_MAX


# --- num_experts -------------------------------------------------------------

@pytest.mark.parametrize("numel,block_size", [(100, 16), (50_000, 1), (50_000, 64), (9000, 1024)])
@pytest.mark.parametrize("map_mode", ["none", "map_after", "map_while_counting"])
def test_num_experts_at_the_limit(device: str, numel: int, block_size: int, map_mode: str) -> None:
    """num_experts = 4096 (with fewer routes than experts, and with many; with
    expert_map both ways; with invalid ids): the reference's result."""
    E = MAX_EXPERTS
    ids = random_routes(numel, E, top_k=4, invalid_frac=0.1, seed=numel + block_size)
    emap = None if map_mode == "none" else random_expert_map(E, seed=block_size)
    ignore = map_mode == "map_while_counting"
    want = reference(ids, block_size, E, emap, False, ignore, return_scatter_idx=map_mode != "map_after")
    got = moe_align_block_size(ids.to(device), block_size, E, None if emap is None else emap.to(device),
                               False, ignore, return_scatter_idx=map_mode != "map_after")
    assert_same(got, want, f"E={E} numel={numel} B={block_size} {map_mode}")


@pytest.mark.parametrize("api", APIS)
def test_num_experts_at_the_limit_every_api(device: str, api: str) -> None:
    """num_experts = 4096 through each entry point: the reference's result."""
    ids = random_routes(3000, MAX_EXPERTS, invalid_frac=0.05, seed=4).to(device)
    got = call(api, ids, MAX_EXPERTS, 32)
    want = reference(ids.cpu(), 32, MAX_EXPERTS)
    assert_same(got[:3], want, api)


@pytest.mark.parametrize("num_experts", [MAX_EXPERTS + 1, 0])
@pytest.mark.parametrize("api", APIS)
def test_num_experts_beyond_the_limit(device: str, api: str, num_experts: int) -> None:
    """num_experts = 4097 or 0: ValueError naming num_experts and its range."""
    ids = torch.zeros(16, dtype=torch.int32, device=device)
    msg = error_of(lambda: call(api, ids, num_experts, 16))
    assert f"num_experts must be in [1, {MAX_EXPERTS}], got {num_experts}" in msg, msg


# --- block_size --------------------------------------------------------------

@pytest.mark.parametrize("numel,num_experts", [(0, 1), (1, 1), (5000, 1), (3000, 256), (70_000, 64)])
def test_block_size_at_the_limit(device: str, numel: int, num_experts: int) -> None:
    """block_size = 1024 (and pad_sorted_ids, and an expert_map mapped while
    counting): the reference's result."""
    B = MAX_BLOCK_SIZE
    ids = random_routes(numel, num_experts, invalid_frac=0.1, seed=numel)
    emap = random_expert_map(num_experts, seed=numel)
    for pad in (False, True):
        want = reference(ids, B, num_experts, emap, pad, True, return_scatter_idx=True)
        got = moe_align_block_size(ids.to(device), B, num_experts, emap.to(device), pad, True,
                                   return_scatter_idx=True)
        assert_same(got, want, f"B={B} numel={numel} E={num_experts} pad={pad}")


@pytest.mark.parametrize("api", APIS)
def test_block_size_at_the_limit_every_api(device: str, api: str) -> None:
    """block_size = 1024 through each entry point: the reference's result."""
    ids = random_routes(5000, 100, invalid_frac=0.05, seed=5).to(device)
    assert_same(call(api, ids, 100, MAX_BLOCK_SIZE)[:3], reference(ids.cpu(), MAX_BLOCK_SIZE, 100), api)


@pytest.mark.parametrize("block_size", [MAX_BLOCK_SIZE + 1, 0])
@pytest.mark.parametrize("api", APIS)
def test_block_size_beyond_the_limit(device: str, api: str, block_size: int) -> None:
    """block_size = 1025 or 0: ValueError naming block_size and its range."""
    ids = torch.zeros(16, dtype=torch.int32, device=device)
    msg = error_of(lambda: call(api, ids, 8, block_size))
    assert f"block_size must be in [1, {MAX_BLOCK_SIZE}], got {block_size}" in msg, msg


# --- numel ---------------------------------------------------------------------

PRACTICAL_ROUTES = 2**22  # the largest checked against the reference by default


@pytest.mark.slow
def test_many_routes_with_every_limit(device: str) -> None:
    """2^22 routes with num_experts = 4096 and block_size = 1024 at once (int16
    ids, invalid ids, expert_map mapped while counting, scatter_idx): the
    reference's result."""
    E, B = MAX_EXPERTS, MAX_BLOCK_SIZE
    ids = random_routes(PRACTICAL_ROUTES, E, top_k=8, dtype=torch.int16, invalid_frac=0.2, seed=22)
    emap = random_expert_map(E, seed=22)
    want = reference(ids, B, E, emap, True, True, return_scatter_idx=True)
    got = moe_align_block_size(ids.to(device), B, E, emap.to(device), True, True,
                               return_scatter_idx=True)
    assert_same(got, want, "2^22 routes, E=4096, B=1024")


@pytest.mark.parametrize("api", APIS)
def test_routes_just_beyond_the_limit(device: str, api: str) -> None:
    """2^30 + 1 routes: ValueError naming topk_ids, its size and the limit."""
    msg = error_of(lambda: call(api, huge_ids(MAX_ROUTES + 1, device), 8, 16, tiny_buffers=True))
    assert f"topk_ids has {MAX_ROUTES + 1} elements; at most {MAX_ROUTES} are supported" in msg, msg
    if device == "cuda":
        torch.cuda.empty_cache()


@pytest.mark.parametrize("numel", [2**31 - 100, 2**31, 2**32 + 1])
def test_routes_far_beyond_the_limit_name_topk_ids(numel: int) -> None:
    """Far more than 2^30 routes through the drop-in: the error still names
    topk_ids and the limit."""
    msg = error_of(lambda: moe_align_block_size(huge_ids(numel, "cpu"), 16, 8))
    assert "topk_ids has" in msg and f"at most {MAX_ROUTES}" in msg, msg


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_routes_beyond_the_limit_refused_before_allocating() -> None:
    """2^30 + 1 routes on CUDA: refused without allocating the outputs first."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    ids = huge_ids(MAX_ROUTES + 1, "cuda")
    error_of(lambda: moe_align_block_size(ids, 16, 8))
    peak = torch.cuda.max_memory_allocated() - base
    torch.cuda.empty_cache()
    assert peak < 2**20, f"{peak} bytes allocated before the refusal"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get(FULL_ENV) != "1", reason=f"opt-in ({FULL_ENV}=1): ~11 GB of memory")
def test_routes_at_the_limit(device: str) -> None:
    """Exactly 2^30 routes with num_experts = 4096 and block_size = 1024: four
    runs of 2^28 routes each (expert 4095, an id of 32767, expert 0, id -1),
    checked slot by slot against what the reference's rules give (the
    reference itself needs too much memory here): expert 0's segment holds
    routes [2^29, 3 * 2^28) from slot 0, expert 4095's holds [0, 2^28) right
    after it, every other slot is the padding value 2^30."""
    E, B, quarter = MAX_EXPERTS, MAX_BLOCK_SIZE, 2**28
    row = torch.tensor([[E - 1], [32767], [0], [-1]], dtype=torch.int16, device=device)
    ids = row.expand(4, quarter)
    assert ids.numel() == MAX_ROUTES
    sorted_ids, expert_ids, post_pad, scatter = moe_align_block_size(ids, B, E, return_scatter_idx=True)
    assert sorted_ids.numel() == C.NEWEST.max_num_tokens_padded(MAX_ROUTES, E, B, False)
    assert int(post_pad) == 2 * quarter
    chunk = 2**24
    for start in range(0, sorted_ids.numel(), chunk):
        stop = min(start + chunk, sorted_ids.numel())
        slots = torch.arange(start, stop, device=device, dtype=torch.int64)
        want = torch.where(slots < quarter, slots + 2 * quarter,  # expert 0: routes from 2^29
                           torch.where(slots < 2 * quarter, slots - quarter, MAX_ROUTES))
        assert torch.equal(sorted_ids[start:stop], want.to(torch.int32)), f"slots [{start}, {stop})"
    blocks = torch.arange(expert_ids.numel(), device=device)
    want_blocks = torch.where(blocks < quarter // B, 0, torch.where(blocks < 2 * quarter // B, E - 1, -1))
    assert torch.equal(expert_ids, want_blocks.to(torch.int32))
    for start in range(0, MAX_ROUTES, chunk):
        routes = torch.arange(start, start + chunk, device=device, dtype=torch.int64)
        kept = (routes < quarter) | ((routes >= 2 * quarter) & (routes < 3 * quarter))
        want = torch.where(kept, routes, -1).to(torch.int32).view(-1, 1)
        assert torch.equal(scatter[start:start + chunk], want), f"scatter [{start}, {start + chunk})"


# --- the other checked bounds ---------------------------------------------------

@pytest.mark.parametrize("numel,num_experts,block_size", [(10, 64, 16), (1000, 8, 4), (0, 4, 4)])
def test_buffers_at_and_below_the_needed_size(device: str, numel: int, num_experts: int,
                                              block_size: int) -> None:
    """Caller buffers of exactly the needed size (min(numel + E*(B-1),
    numel*B) slots, its blocks) give the reference's result; one slot or one
    block less: ValueError naming the buffer."""
    ids = random_routes(numel, num_experts, invalid_frac=0.1, seed=numel).to(device)
    need = min(numel + num_experts * (block_size - 1), numel * block_size)
    blocks = -(-need // block_size)
    sorted_ids, expert_ids, post_pad = poisoned(need, device), poisoned(blocks, device), poisoned(1, device)
    OPS.moe_align_block_size_out(ids, num_experts, block_size, sorted_ids, expert_ids, post_pad)
    contract_size = C.NEWEST.max_num_tokens_padded(numel, num_experts, block_size, False)
    assert contract_size == need
    assert_same((sorted_ids, expert_ids, post_pad), reference(ids.cpu(), block_size, num_experts), "at need")
    if need > 0:
        msg = error_of(lambda: OPS.moe_align_block_size_out(
            ids, num_experts, block_size, poisoned(need - 1, device), poisoned(blocks, device),
            poisoned(1, device)))
        assert f"sorted_token_ids has {need - 1} elements; at least {need}" in msg, msg
    if blocks > 0:
        msg = error_of(lambda: OPS.moe_align_block_size_out(
            ids, num_experts, block_size, poisoned(need, device), poisoned(blocks - 1, device),
            poisoned(1, device)))
        assert f"expert_ids has {blocks - 1} elements; at least {blocks}" in msg, msg


def test_max_num_tokens_padded_bounds(device: str) -> None:
    """The allocating op's max_num_tokens_padded: the needed size works and
    gives the reference's result; one less and 2^31 are refused, naming it."""
    ids = random_routes(500, 64, invalid_frac=0.1, seed=6).to(device)
    need = 500 + 64 * 15
    got = OPS.moe_align_block_size(ids, 64, 16, need)
    assert_same(got[:3], reference(ids.cpu(), 16, 64), "at need")
    for bad in (need - 1, 2**31):
        msg = error_of(lambda bad=bad: OPS.moe_align_block_size(ids, 64, 16, bad))
        assert f"max_num_tokens_padded must be in [{need}, 2^31)" in msg and f"got {bad}" in msg, msg


@pytest.mark.parametrize("tail", [-8, 7, -1, 0])
def test_expert_ids_tail_at_the_bounds_of_the_map(device: str, tail: int) -> None:
    """Mapping the output ids, the tail value indexes expert_map Python-style:
    -E and E-1 (the bounds) work: used blocks as the reference, the rest
    expert_map[tail]."""
    E, B = 8, 4
    ids = random_routes(37, E, invalid_frac=0.1, seed=7).to(device)
    emap = random_expert_map(E, seed=7).to(device)
    size = 37 + E * (B - 1)
    out = (poisoned(size, device), poisoned(-(-size // B), device), poisoned(1, device))
    OPS.moe_align_block_size_out(ids, E, B, *out, emap, None, False, tail)
    want = reference(ids.cpu(), B, E, emap.cpu())
    used = int(want[2]) // B
    assert torch.equal(out[0].cpu(), want[0]) and torch.equal(out[2].cpu(), want[2])
    assert torch.equal(out[1][:used].cpu(), want[1][:used])
    assert (out[1][used:].cpu() == int(emap[tail])).all()


@pytest.mark.parametrize("tail", [-9, 8])
def test_expert_ids_tail_beyond_the_map(device: str, tail: int) -> None:
    """Mapping the output ids, a tail outside [-E, E) is refused, naming it."""
    ids = torch.zeros(4, dtype=torch.int32, device=device)
    emap = torch.arange(8, dtype=torch.int32, device=device)
    size = 4 + 8 * 3
    msg = error_of(lambda: OPS.moe_align_block_size_out(
        ids, 8, 4, poisoned(size, device), poisoned(size // 4, device), poisoned(1, device),
        emap, None, False, tail))
    assert f"expert_ids_tail={tail} is not a valid index into expert_map" in msg, msg


@pytest.mark.parametrize("tail,ok", [(INT32_MAX, True), (-(2**31), True), (2**31, False),
                                     (-(2**31) - 1, False)])
def test_expert_ids_tail_int32_range(device: str, tail: int, ok: bool) -> None:
    """Without a map the tail value is stored as is: the int32 extremes work
    (every block past the last used one holds it); one beyond is refused."""
    ids = random_routes(20, 4, seed=8).to(device)
    size = 20 + 4 * 7
    out = (poisoned(size, device), poisoned(size // 8 + 1, device), poisoned(1, device))
    run = lambda: OPS.moe_align_block_size_out(ids, 4, 8, *out, None, None, False, tail)  # noqa: E731
    if not ok:
        assert "expert_ids_tail must fit in int32" in error_of(run)
        return
    run()
    want = reference(ids.cpu(), 8, 4)
    used = int(want[2]) // 8
    assert torch.equal(out[0].cpu(), want[0]) and torch.equal(out[1][:used].cpu(), want[1][:used])
    assert (out[1][used:].cpu() == tail).all()


UNSIGNED = [torch.uint16, torch.uint32, torch.uint64]


@pytest.mark.parametrize("dtype", UNSIGNED, ids=str)
def test_unsigned_ids_are_refused_by_name(device: str, dtype: torch.dtype) -> None:
    """topk_ids of torch's wide unsigned dtypes (which the kernels do not read)
    are refused with a TypeError naming topk_ids, on every device."""
    ids = torch.tensor([0, 3, 7, 3], dtype=torch.int64).to(dtype).to(device)
    with pytest.raises(TypeError, match="topk_ids"):
        moe_align_block_size(ids, 4, 8)
