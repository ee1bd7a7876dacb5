"""The pure-torch oracle of vLLM 0.33's ``fused_globalize_align_block_size``:
a hand-worked example, the two-step chain it replaces (globalize, then the
align reference with the rank's expert map) on a grid like vLLM's test, the
edges of its contract, and vLLM's own function where it can run."""

from __future__ import annotations

import inspect
import itertools

import pytest
import torch
from helpers import GLOBALIZE_GRID

from vllm_moe_align_plugin.contract import parameters_of
from vllm_moe_align_plugin.globalize_reference import (
    fused_globalize_align_block_size_reference as fused_reference,
)
from vllm_moe_align_plugin.reference import moe_align_block_size_reference

# --------------------------------------------------------------------------- helpers


def _psum(num_recv: int, ranks: int = 4) -> torch.Tensor:
    """DeepEP's prefix sum of received rows per rank; only the last entry counts,
    so the others get values that would mislead a reader of the wrong entry."""
    psum = torch.arange(1, ranks + 1, dtype=torch.int32) * 1000
    psum[-1] = num_recv
    return psum


def _expert_map(global_e: int, offset: int, local_e: int) -> torch.Tensor:
    """The expert map of the rank whose local expert 0 is global ``offset``."""
    emap = torch.full((global_e,), -1, dtype=torch.int32)
    last = min(offset + local_e, global_e)
    emap[offset:last] = torch.arange(last - offset, dtype=torch.int32)
    return emap


def _chain(
    local_idx: torch.Tensor,
    psum: torch.Tensor,
    offset: int,
    global_e: int,
    local_e: int,
    block_size: int,
    scatter: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The two steps the fused op replaces: globalize (vLLM's Triton step knows
    no local expert count: a local id is kept when it is >= 0, its global id is
    < global_e and its row is real), then align with the rank's expert map,
    dropping experts of other ranks. Sized by the global expert count."""
    rows = torch.arange(local_idx.shape[0]).unsqueeze(1)
    keep = (local_idx >= 0) & (local_idx + offset < global_e) & (rows < int(psum[-1]))
    glob = torch.where(keep, local_idx + offset, -1)
    aligned = moe_align_block_size_reference(
        glob,
        block_size,
        global_e,
        _expert_map(global_e, offset, local_e),
        ignore_invalid_experts=True,
        return_scatter_idx=scatter,
    )
    return glob, aligned


def _sizes(numel: int, local_e: int, block_size: int) -> tuple[int, int]:
    """(len(sorted_ids), len(expert_ids)) of the fused op: sized by local experts."""
    padded = numel + local_e * (block_size - 1)
    if numel < local_e:
        padded = min(padded, numel * block_size)
    return padded, -(-padded // block_size)


def _check_layout(out: tuple[torch.Tensor, ...], numel: int, local_e: int, block_size: int) -> None:
    """Sizes, dtypes and fill values of the outputs after the used part."""
    _, sorted_ids, expert_ids, post_pad = out[:4]
    want_sorted, want_blocks = _sizes(numel, local_e, block_size)
    assert sorted_ids.shape == (want_sorted,) and sorted_ids.dtype == torch.int32
    assert expert_ids.shape == (want_blocks,) and expert_ids.dtype == torch.int32
    assert post_pad.shape == (1,) and post_pad.dtype == torch.int32
    used = int(post_pad)
    assert used % block_size == 0 and used <= want_sorted
    assert (sorted_ids[used:] == numel).all()
    assert (expert_ids[used // block_size :] == -1).all()
    assert ((expert_ids[: used // block_size] >= 0) & (expert_ids[: used // block_size] < local_e)).all()
    if len(out) == 5:
        assert out[4].shape == (numel, 1) and out[4].dtype == torch.int32


def _compare_with_chain(
    local_idx: torch.Tensor, psum: torch.Tensor, offset: int, global_e: int, local_e: int,
    block_size: int, scatter: bool, what: str,
) -> tuple[torch.Tensor, ...]:
    """The fused reference equals the chain on the used part and in the rewrite
    of the ids (for local ids in [-1, local_e), as vLLM's test draws them)."""
    fused = fused_reference(local_idx.clone(), psum, offset, global_e, local_e, block_size, scatter)
    glob, (sorted_ids, expert_ids, post_pad, *chain_scatter) = _chain(
        local_idx, psum, offset, global_e, local_e, block_size, scatter
    )
    assert len(fused) == 4 + scatter, what
    _check_layout(fused, local_idx.numel(), local_e, block_size)
    used = int(post_pad)
    assert torch.equal(fused[0], glob), what
    assert torch.equal(fused[3], post_pad), what
    # both put routes in ascending order inside a segment, so the used part is equal
    assert torch.equal(fused[1][:used], sorted_ids[:used]), what
    assert torch.equal(fused[2][: used // block_size], expert_ids[: used // block_size]), what
    if scatter:
        assert torch.equal(fused[4], chain_scatter[0]), what
    return fused


# --------------------------------------------------------------------------- 1. by hand


def test_hand_worked_example(device: str) -> None:
    """Two ranks of 3 experts (6 in all), this is rank 1 (global ids 3..5);
    3 real rows of 4, top-2, blocks of 2.

    route:    0  1 | 2  3 | 4  5 | 6  7
    local id: 2  0 |-1  2 | 1  5 | 1  1   (row 3 is garbage, id 5 is not local)
    valid:    y  y | n  y | y  n | n  n
    expert 0: route 1 -> slots 0-1 = [1, pad]
    expert 1: route 4 -> slots 2-3 = [4, pad]
    expert 2: routes 0, 3 -> slots 4-5 = [0, 3]
    8 routes, 3 local experts: 8 + 3 * (2 - 1) = 11 slots, 6 blocks; pad = 8."""
    ids = torch.tensor([[2, 0], [-1, 2], [1, 5], [1, 1]], device=device)
    psum = torch.tensor([2, 3], dtype=torch.int32, device=device)  # 2 rows from rank 0, 1 from rank 1
    out = fused_reference(ids, psum, 3, 6, 3, 2, return_scatter_idx=True)
    assert len(out) == 5 and out[0] is ids
    assert ids.tolist() == [[5, 3], [-1, 5], [4, -1], [-1, -1]]
    assert out[1].tolist() == [1, 8, 4, 8, 0, 3, 8, 8, 8, 8, 8]
    assert out[2].tolist() == [0, 1, 2, -1, -1, -1]
    assert out[3].tolist() == [6]
    assert out[4].flatten().tolist() == [0, 1, -1, 3, 4, -1, -1, -1]
    for t in out:
        assert t.device == ids.device
    assert [t.dtype for t in out] == [torch.int64] + [torch.int32] * 4


# --------------------------------------------------------------------------- 2. the chain

# vLLM's test grid (tests/helpers.py): n x topk x fill are test ids; block
# size x local experts x rank run inside each (24 cases), all 1536 combinations.
NS, TOPKS, FILLS = GLOBALIZE_GRID.ns, GLOBALIZE_GRID.topks, GLOBALIZE_GRID.fills
BLOCK_SIZES, LOCAL_ES, RANKS = GLOBALIZE_GRID.block_sizes, GLOBALIZE_GRID.local_es, GLOBALIZE_GRID.ranks
EP_SIZE = GLOBALIZE_GRID.ep_size


def _make_case(
    n: int, topk: int, local_e: int, fill: str, gen: torch.Generator, frac_recv: float = 0.75
) -> tuple[torch.Tensor, int]:
    """Local ids [n, topk] drawn like vLLM's test, and the real row count; the
    rows past it are garbage that looks like valid ids."""
    shape = (n, topk)
    if fill == "all_nonlocal":
        ids = torch.full(shape, -1, dtype=torch.int64)
    elif fill == "single":
        ids = torch.zeros(shape, dtype=torch.int64)
    elif fill == "all_local":
        ids = torch.randint(0, local_e, shape, generator=gen)
    else:
        ids = torch.randint(-1, local_e, shape, generator=gen)
    num_recv = min(max(round(n * frac_recv), 0), n)
    ids[num_recv:] = torch.randint(-1, local_e, (n - num_recv, topk), generator=gen)
    return ids, num_recv


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("topk", TOPKS)
@pytest.mark.parametrize("n", NS)
def test_equals_the_chain(n: int, topk: int, fill: str) -> None:
    gen = torch.Generator().manual_seed(n * 131 + topk)
    for k, (block_size, local_e, rank) in enumerate(itertools.product(BLOCK_SIZES, LOCAL_ES, RANKS)):
        ids, num_recv = _make_case(n, topk, local_e, fill, gen)
        what = f"n={n} topk={topk} fill={fill} B={block_size} L={local_e} rank={rank}"
        _compare_with_chain(
            ids, _psum(num_recv), RANKS[rank] * local_e, EP_SIZE * local_e, local_e, block_size,
            scatter=k % 2 == 1, what=what,
        )


def test_equals_the_chain_when_the_last_rank_is_short() -> None:
    """Global experts not a multiple of the ranks: the last rank's local ids whose
    global id is >= global_num_experts are dropped (by both)."""
    gen = torch.Generator().manual_seed(7)
    for n, local_e, missing in [(5, 8, 3), (64, 28, 27), (257, 32, 1)]:
        ids, num_recv = _make_case(n, 8, local_e, "rand", gen)
        offset, global_e = 3 * local_e, 4 * local_e - missing
        out = _compare_with_chain(ids, _psum(num_recv), offset, global_e, local_e, 16, True, f"n={n}")
        assert out[0].max() < global_e
        assert (out[2] < local_e - missing).all()


# --------------------------------------------------------------------------- 3. edges


def test_valid_count_is_the_last_psum_entry() -> None:
    n, topk, local_e, block_size, offset, global_e = 9, 4, 8, 4, 8, 32
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(-1, local_e, (n, topk), generator=gen)
    ids[:, 0] = torch.arange(n) % local_e  # every row has a valid route
    by_count = {}
    for num_recv in [0, 1, 5, n, n + 3]:
        out = fused_reference(ids.clone(), _psum(num_recv), offset, global_e, local_e, block_size, True)
        real = min(num_recv, n)
        assert (out[0][real:] == -1).all(), num_recv
        assert torch.equal(out[0][:real] != -1, ids[:real] != -1), num_recv
        used = int(out[3])
        listed = out[1][:used][out[1][:used] != n * topk]  # without padding
        assert (listed < real * topk).all(), num_recv
        assert listed.numel() == int((ids[:real] != -1).sum()), num_recv
        assert (out[4].view(n, topk)[real:] == -1).all()
        by_count[num_recv] = out

        # the other psum entries and the garbage rows change nothing
        psum = torch.tensor([num_recv], dtype=torch.int32)
        garbage = ids.clone()
        garbage[real:] = torch.randint(-5, 3 * local_e, (n - real, topk), generator=gen)
        again = fused_reference(garbage, psum, offset, global_e, local_e, block_size, True)
        for a, b in zip(out, again):
            assert torch.equal(a, b), num_recv

    nothing = by_count[0]
    assert int(nothing[3]) == 0 and (nothing[1] == n * topk).all() and (nothing[2] == -1).all()
    assert (nothing[0] == -1).all() and (nothing[4] == -1).all()
    # a count past the rows means every row is real
    for a, b in zip(by_count[n], by_count[n + 3]):
        assert torch.equal(a, b)


def test_ids_outside_the_local_range_are_dropped() -> None:
    """Local ids < 0 or >= local_num_experts, or whose global id is >=
    global_num_experts, become -1 and are not counted. Here the fused op is
    stricter than the chain's globalize step, which keeps a local id >= L whose
    global id fits (as another rank's expert, which the align step then drops):
    the rewritten ids differ there, the aligned outputs do not."""
    local_e, offset, global_e, block_size = 4, 4, 10, 2  # this rank owns global ids 4..7
    ids = torch.tensor([[0, 4], [-2, 3], [5, -1], [7, 1], [2, 6]])
    fused = fused_reference(ids.clone(), _psum(5), offset, global_e, local_e, block_size, True)
    assert fused[0].tolist() == [[4, -1], [-1, 7], [-1, -1], [-1, 5], [6, -1]]
    assert fused[4].flatten().tolist() == [0, -1, -1, 3, -1, -1, -1, 7, 8, -1]
    assert fused[3].tolist() == [8]
    assert fused[1][:8].tolist() == [0, 10, 7, 10, 8, 10, 3, 10]
    assert fused[2][:4].tolist() == [0, 1, 2, 3]

    glob, (sorted_ids, expert_ids, post_pad, scatter) = _chain(
        ids, _psum(5), offset, global_e, local_e, block_size, True
    )
    assert glob.tolist() == [[4, 8], [-1, 7], [9, -1], [-1, 5], [6, -1]]  # 4 -> 8, 5 -> 9 kept
    assert torch.equal(fused[3], post_pad) and torch.equal(fused[4], scatter)
    assert torch.equal(fused[1][:8], sorted_ids[:8]) and torch.equal(fused[2][:4], expert_ids[:4])


def test_ids_are_read_as_32_bit_ints() -> None:
    """vLLM's kernel casts each int64 id to int; the oracle reads them the same way."""
    ids = torch.tensor([[0, 2**32 + 1], [-(2**32) + 2, 2**33 - 1]])
    as_int = torch.tensor([[0, 1], [2, -1]])
    want = fused_reference(as_int, _psum(2), 4, 8, 4, 2, True)
    got = fused_reference(ids, _psum(2), 4, 8, 4, 2, True)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    assert ids.tolist() == [[4, 5], [6, -1]]


@pytest.mark.parametrize("topk", [0, 1, 8])
@pytest.mark.parametrize("scatter", [False, True])
def test_empty_input(topk: int, scatter: bool) -> None:
    ids = torch.empty((0, topk), dtype=torch.int64)
    out = fused_reference(ids, _psum(0), 28, 112, 28, 16, scatter)
    assert len(out) == 4 + scatter and out[0] is ids and ids.shape == (0, topk)
    _check_layout(out, 0, 28, 16)
    assert [t.numel() for t in out] == [0, 0, 0, 1] + [0] * scatter
    assert int(out[3]) == 0
    if topk:
        _compare_with_chain(ids, _psum(0), 28, 112, 28, 16, scatter, f"topk={topk}")


@pytest.mark.parametrize("n,topk", [(1, 1), (1, 2), (3, 8), (1, 27), (1, 28), (2, 14), (1, 29)])
def test_fewer_routes_than_local_experts_caps_the_size(n: int, topk: int) -> None:
    """numel < local_num_experts caps sorted_ids at numel * block_size (and
    expert_ids at numel blocks): each route can fill at most one block."""
    local_e, block_size = 28, 64
    numel = n * topk
    gen = torch.Generator().manual_seed(numel)
    ids = torch.randint(-1, local_e, (n, topk), generator=gen)
    out = _compare_with_chain(ids, _psum(n), 56, 112, local_e, block_size, True, f"n={n} topk={topk}")
    if numel < local_e:
        assert out[1].numel() == numel * block_size and out[2].numel() == numel
    else:
        assert out[1].numel() == numel + local_e * (block_size - 1)


def test_return_scatter_idx_both_ways(device: str) -> None:
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(-1, 32, (257, 8), generator=gen).to(device)
    psum = _psum(200).to(device)
    plain_in, with_in = ids.clone(), ids.clone()
    plain = fused_reference(plain_in, psum, 32, 128, 32, 16)
    with_scatter = fused_reference(with_in, psum, 32, 128, 32, 16, return_scatter_idx=True)
    assert len(plain) == 4 and len(with_scatter) == 5
    assert plain[0] is plain_in and with_scatter[0] is with_in
    for a, b in zip(plain, with_scatter):
        assert torch.equal(a, b)
    scatter = with_scatter[4]
    assert scatter.shape == (ids.numel(), 1) and scatter.dtype == torch.int32 and scatter.device == ids.device
    routes = torch.arange(ids.numel(), device=device)
    assert torch.equal(scatter.flatten().long(), torch.where(with_in.flatten() != -1, routes, -1))
    # every valid route appears once in sorted_ids, each invalid one never
    used = int(with_scatter[3])
    listed = with_scatter[1][:used]
    listed = listed[listed < ids.numel()]
    assert torch.equal(torch.sort(listed).values.long(), routes[scatter.flatten() >= 0])


def test_refuses_inputs_outside_the_contract() -> None:
    ids = torch.zeros((4, 2), dtype=torch.int64)
    psum = _psum(4)
    bad = [
        ((ids.int(), psum, 4, 4), "int64"),
        ((ids.flatten(), psum, 4, 4), "2-D"),
        ((torch.zeros((2, 4), dtype=torch.int64).t(), psum, 4, 4), "contiguous"),
        ((ids, psum.long(), 4, 4), "int32"),
        ((ids, torch.tensor(4, dtype=torch.int32), 4, 4), "1-D"),
        ((ids, torch.empty(0, dtype=torch.int32), 4, 4), "non-empty"),
        ((ids, psum.to("meta"), 4, 4), "meta"),
        ((ids, psum, 1025, 4), "1024"),
        ((ids, psum, -1, 4), "1024"),
        ((ids, psum, 4, 0), "block_size"),
    ]
    for (i, p, local_e, block_size), words in bad:
        before = i.clone()
        with pytest.raises(ValueError, match=words):
            fused_reference(i, p, 0, 8, local_e, block_size)
        assert torch.equal(i, before), words  # untouched
    fused_reference(ids, psum, 0, 8, 1024, 4)  # the limit itself is fine


# --------------------------------------------------------------------------- 4. vLLM's function


def _vllm_function() -> object:
    module = pytest.importorskip(
        "vllm.model_executor.layers.fused_moe.fused_globalize_align_block_size",
        reason="needs vLLM >= 0.33 (the release that added fused_globalize_align_block_size)",
    )
    return module.fused_globalize_align_block_size


def _segments(out: tuple[torch.Tensor, ...], block_size: int) -> dict[int, list[int]]:
    """expert -> the entries of its segment (routes and padding), sorted: vLLM's
    order inside a segment is unspecified, so a segment is compared as a set."""
    sorted_ids, expert_ids, used = out[1].cpu(), out[2].cpu(), int(out[3])
    groups: dict[int, list[int]] = {}
    for b in range(used // block_size):
        block = sorted_ids[b * block_size : (b + 1) * block_size].tolist()
        groups.setdefault(int(expert_ids[b]), []).extend(block)
    return {e: sorted(routes) for e, routes in groups.items()}


@pytest.mark.vllm
def test_signature_is_vllms() -> None:
    vllm_fn = _vllm_function()
    assert parameters_of(vllm_fn) == parameters_of(fused_reference)  # type: ignore[arg-type]
    # ours is a string (postponed annotations), theirs the type itself
    theirs = inspect.signature(vllm_fn).return_annotation  # type: ignore[arg-type]
    assert str(theirs) == inspect.signature(fused_reference).return_annotation


@pytest.mark.vllm
@pytest.mark.parametrize("n", [1, 7, 64, 257])
def test_vllms_function_where_it_runs(device: str, n: int) -> None:
    """vLLM's function, where its op has a kernel for the device (vLLM builds it
    for CUDA only), against the oracle: equal rewrite, sizes, dtypes, tails,
    and each expert's segment as a set."""
    vllm_fn = _vllm_function()
    gen = torch.Generator().manual_seed(n)
    local_e, block_size, topk = 28, 64, 16
    ids, num_recv = _make_case(n, topk, local_e, "rand", gen)
    args = (_psum(num_recv).to(device), 2 * local_e, 4 * local_e, local_e, block_size)
    theirs_in = ids.to(device)
    op = "torch.ops._moe_C.fused_globalize_align_block_size"
    if not hasattr(torch.ops._moe_C, "fused_globalize_align_block_size"):
        pytest.skip(f"vLLM's function cannot run: this vLLM build has no {op} (vLLM builds it for CUDA only)")
    try:
        theirs = vllm_fn(theirs_in, *args, return_scatter_idx=True)  # type: ignore[operator]
    except NotImplementedError as exc:  # the op exists, without a kernel for this device
        pytest.skip(f"vLLM's {op} has no {device} kernel: {str(exc)[:200]}")
    ours = fused_reference(ids.to(device), *args, return_scatter_idx=True)
    assert len(theirs) == len(ours) == 5 and theirs[0] is theirs_in
    for name, a, b in zip(("ids", "sorted_ids", "expert_ids", "post_pad", "scatter"), theirs, ours):
        assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device, name
    assert torch.equal(theirs[0], ours[0])
    assert torch.equal(theirs[3], ours[3])
    assert torch.equal(theirs[4], ours[4])
    used = int(ours[3])
    assert torch.equal(theirs[2], ours[2])
    assert torch.equal(theirs[1][used:], ours[1][used:])
    assert _segments(theirs, block_size) == _segments(ours, block_size)
