"""fused_globalize_align_block_size (the op ``fused_globalize_align_block_size_out``
and the function ``globalize.fused_globalize_align_block_size`` over it) equals
the pure-torch oracle bit for bit: vLLM's test grid, a fuzz, the edges.
Outputs start poisoned, so every element the op must write is seen written.
Then bad inputs (an error naming the argument, nothing written), opcheck and
torch.compile; on CUDA, every launch regime of the align kernels and a
captured CUDA graph replayed with new ids and a new row count. A build
without CUDA kernels skips the CUDA cases."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from helpers import GLOBALIZE_GRID, poisoned

from vllm_moe_align_plugin import _ops
from vllm_moe_align_plugin._ops import checks, cuda_globalize_plan
from vllm_moe_align_plugin.contract import parameters_of
from vllm_moe_align_plugin.globalize import OP_NAME, buffer_sizes, fused_globalize_align_block_size
from vllm_moe_align_plugin.globalize_reference import (
    fused_globalize_align_block_size_reference as reference,
)

OUT = torch.ops.vllm_moe_align.fused_globalize_align_block_size_out
NAMES = ("recv_topk_idx", "sorted_ids", "expert_ids", "num_tokens_post_pad", "scatter_idx")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# --------------------------------------------------------------------------- helpers


def _need_kernel(device: str) -> None:
    if not torch._C._dispatch_has_kernel_for_dispatch_key(OP_NAME, device.upper()):
        pytest.skip(f"the plugin has no {device} kernel for fused_globalize_align_block_size yet")


def _psum(num_recv: int, ranks: int = 4, device: str = "cpu") -> torch.Tensor:
    """DeepEP's prefix sum of rows per rank: only the last entry is read, so the
    others hold values that would mislead a reader of the wrong one."""
    psum = torch.arange(1, ranks + 1, dtype=torch.int32) * 1000
    psum[-1] = num_recv
    return psum.to(device)


def _buffers(numel: int, local_e: int, block_size: int, scatter: bool, device: str) -> list:
    """Poisoned outputs of the contract's sizes (scatter_idx or None)."""
    size, blocks = buffer_sizes(numel, local_e, block_size) or (0, 0)
    return [poisoned(size, device), poisoned(blocks, device), poisoned(1, device),
            poisoned(0, device, (numel, 1)) if scatter else None]


def _run_out(ids: torch.Tensor, psum: torch.Tensor, ints: tuple[int, int, int, int],
             scatter: bool) -> tuple[torch.Tensor, ...]:
    """The out-variant on poisoned buffers; returns them as the function would."""
    bufs = _buffers(ids.numel(), ints[2], ints[3], scatter, ids.device.type)
    OUT(ids, psum, *ints, *bufs)
    return (ids, *bufs[:3]) + ((bufs[3],) if scatter else ())


def _assert_equal(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...], what: str) -> None:
    assert len(got) == len(want), f"{what}: {len(got)} outputs, expected {len(want)}"
    for name, g, w in zip(NAMES, got, want):
        g = g.cpu()
        assert (g.dtype, g.shape) == (w.dtype, w.shape), f"{what} {name}: {g.dtype} {tuple(g.shape)}"
        if not torch.equal(g, w):
            bad = (g.flatten() != w.flatten()).nonzero().flatten()[:10].tolist()
            raise AssertionError(f"{what} {name} differs at {bad}: got {g.flatten()[bad].tolist()}, "
                                 f"want {w.flatten()[bad].tolist()}")


def _check(ids: torch.Tensor, psum: torch.Tensor, ints: tuple[int, int, int, int], scatter: bool,
           device: str, what: str) -> None:
    """The oracle (on CPU) against the out-variant on poisoned buffers and
    against the function, both on ``device``; ``ids`` is left as it was."""
    want = reference(ids.clone(), psum, *ints, scatter)
    by_op = _run_out(ids.to(device, copy=True), psum.to(device), ints, scatter)
    _assert_equal(by_op, want, f"{what} (op)")
    ids_in = ids.to(device, copy=True)
    by_function = fused_globalize_align_block_size(ids_in, psum.to(device), *ints,
                                                   return_scatter_idx=scatter)
    assert by_function[0] is ids_in, what
    _assert_equal(by_function, want, f"{what} (function)")


# --------------------------------------------------------------------------- by hand


def test_hand_worked_example(device: str) -> None:
    """The oracle's worked example (test_globalize_reference.py spells out its
    values): rank 1 of two with 3 experts each, 3 real rows of 4, top-2,
    blocks of 2; the op gives the oracle's outputs and rewrite."""
    _need_kernel(device)

    def inputs() -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.tensor([[2, 0], [-1, 2], [1, 5], [1, 1]], device=device),
                torch.tensor([2, 3], dtype=torch.int32, device=device))

    ids, psum = inputs()
    out = fused_globalize_align_block_size(ids, psum, 3, 6, 3, 2, return_scatter_idx=True)
    want = reference(*inputs(), 3, 6, 3, 2, return_scatter_idx=True)
    assert len(out) == 5 and out[0] is ids
    assert [t.tolist() for t in out] == [t.tolist() for t in want]
    assert all(t.device == ids.device for t in out)


def test_signature_is_the_oracles() -> None:
    """The oracle's signature is vLLM 0.33's (test_globalize_reference.py checks
    it against vLLM where vLLM is installed)."""
    assert parameters_of(fused_globalize_align_block_size) == parameters_of(reference)
    assert (fused_globalize_align_block_size.__annotations__["return"]
            == reference.__annotations__["return"])


# --------------------------------------------------------------------------- vLLM's grid

# vLLM's test grid (tests/helpers.py): n x topk x fill are test ids; block
# size x local experts x rank run inside each (24 cases), all 1536 combinations.
NS, TOPKS, FILLS = GLOBALIZE_GRID.ns, GLOBALIZE_GRID.topks, GLOBALIZE_GRID.fills
BLOCK_SIZES, LOCAL_ES, RANKS = GLOBALIZE_GRID.block_sizes, GLOBALIZE_GRID.local_es, GLOBALIZE_GRID.ranks
EP_SIZE = GLOBALIZE_GRID.ep_size


def _vllm_case(n: int, topk: int, local_e: int, fill: str, gen: torch.Generator,
               frac_recv: float) -> tuple[torch.Tensor, int]:
    """Local ids drawn as vLLM's test draws them, and the real row count; the
    rows past it hold ids that look valid."""
    shape = (n, topk)
    if fill == "all_nonlocal":
        ids = torch.full(shape, -1, dtype=torch.int64)
    elif fill == "single":
        ids = torch.zeros(shape, dtype=torch.int64)
    else:
        ids = torch.randint(0 if fill == "all_local" else -1, local_e, shape, generator=gen)
    num_recv = min(round(n * frac_recv), n)
    ids[num_recv:] = torch.randint(-1, local_e, (n - num_recv, topk), generator=gen)
    return ids, num_recv


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("topk", TOPKS)
@pytest.mark.parametrize("n", NS)
def test_vllm_grid(device: str, n: int, topk: int, fill: str) -> None:
    _need_kernel(device)
    gen = torch.Generator().manual_seed(n * 131 + topk)
    for k, (block_size, local_e, rank) in enumerate(itertools.product(BLOCK_SIZES, LOCAL_ES, RANKS)):
        ids, num_recv = _vllm_case(n, topk, local_e, fill, gen, (0.75, 0.5)[k % 2])
        ints = (RANKS[rank] * local_e, EP_SIZE * local_e, local_e, block_size)
        what = f"n={n} topk={topk} fill={fill} B={block_size} L={local_e} rank={rank}"
        _check(ids, _psum(num_recv), ints, k % 3 != 0, device, what)


# --------------------------------------------------------------------------- fuzz


def _fuzz_case(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """Random shapes, expert counts (0 to 1024), offsets, global counts (some
    cutting into the rank's experts), real-row counts (negative to past the
    end), ids in and around [0, L), some past 32 bits."""

    def draw(low: int, high: int) -> int:  # in [low, high]
        return int(torch.randint(low, high + 1, (), generator=gen))

    n = draw(0, 300) if draw(0, 3) else draw(0, 3)
    topk = draw(0, 10)
    local_e = (0, 1, 1024, draw(2, 64), draw(2, 64))[draw(0, 4)]
    block_size = (1, draw(2, 16), draw(17, 130))[draw(0, 2)]
    rank = draw(0, 7)
    offset = rank * local_e + draw(0, 2)
    global_e = max(0, offset + local_e + draw(-local_e - 2, 8))
    num_recv = draw(-2, n + 3)
    ids = torch.randint(-3, local_e + 4, (n, topk), generator=gen)
    if draw(0, 3) == 0 and ids.numel():  # ids whose low 32 bits differ from their value
        wide = torch.rand(ids.shape, generator=gen) < 0.2
        ids = torch.where(wide, ids + torch.randint(-4, 4, ids.shape, generator=gen) * 2**32, ids)
    psum = _psum(num_recv, ranks=draw(1, 5))
    return ids, psum, (offset, global_e, local_e, block_size)


@pytest.mark.parametrize("chunk", range(8))
def test_fuzz(device: str, chunk: int) -> None:
    _need_kernel(device)
    gen = torch.Generator().manual_seed(1000 + chunk)
    for k in range(40):
        ids, psum, ints = _fuzz_case(gen)
        scatter = bool(k % 2)
        _check(ids, psum, ints, scatter, device, f"chunk {chunk} case {k}: {tuple(ids.shape)} "
                                                 f"psum[-1]={int(psum[-1])} ints={ints}")


@pytest.mark.parametrize("shape", [(0, 8), (5, 0), (0, 0)])
@pytest.mark.parametrize("local_e", [0, 28])
def test_no_routes(device: str, shape: tuple[int, int], local_e: int) -> None:
    _need_kernel(device)
    ids = torch.empty(shape, dtype=torch.int64)
    _check(ids, _psum(3), (28, 112, local_e, 16), True, device, f"{shape} L={local_e}")


def test_ids_are_read_as_32_bit_ints(device: str) -> None:
    _need_kernel(device)
    ids = torch.tensor([[0, 2**32 + 1], [-(2**32) + 2, 2**33 - 1]], device=device)
    out = fused_globalize_align_block_size(ids, _psum(2, device=device), 4, 8, 4, 2)
    assert ids.tolist() == [[4, 5], [6, -1]]
    assert out[1].tolist()[:6] == [0, 4, 1, 4, 2, 4]


# --------------------------------------------------------------------------- bad input


def _valid_args(device: str) -> dict[str, object]:
    n, topk, local_e, block_size = 6, 4, 8, 4
    ids = torch.randint(-1, local_e, (n, topk), generator=torch.Generator().manual_seed(0))
    sorted_ids, expert_ids, post_pad, scatter = _buffers(n * topk, local_e, block_size, True, device)
    return dict(recv_topk_idx=ids.to(device), psum_recv_per_rank=_psum(4, device=device),
                rank_expert_offset=8, global_num_experts=32, local_num_experts=local_e,
                block_size=block_size, sorted_ids=sorted_ids, expert_ids=expert_ids,
                num_tokens_post_pad=post_pad, scatter_idx=scatter)


def _int32(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int32)


def _shared(args: dict[str, object]) -> dict[str, object]:
    """sorted_ids and expert_ids carved from one buffer, one slot shared."""
    size, blocks = args["sorted_ids"].numel(), args["expert_ids"].numel()  # type: ignore[union-attr]
    buf = poisoned(size + blocks - 1, "cpu")
    return {"sorted_ids": buf[:size], "expert_ids": buf[size - 1:]}


def _ids_over_sorted(args: dict[str, object]) -> dict[str, object]:
    """recv_topk_idx (24 int64) and sorted_ids (48 int32) in one buffer, 38 ints shared."""
    buf = poisoned(58, "cpu")
    return {"recv_topk_idx": buf[:48].view(torch.int64).view(6, 4), "sorted_ids": buf[10:]}


def _psum_in_scatter(args: dict[str, object]) -> dict[str, object]:
    return {"psum_recv_per_rank": args["scatter_idx"].view(-1)[-2:]}  # type: ignore[union-attr]


# (what changes, the error, its message): each is the first thing wrong
BAD = [
    ({"recv_topk_idx": torch.zeros(6, 4, dtype=torch.int32)}, TypeError,
     "recv_topk_idx must be an int64 tensor, got Int"),
    ({"recv_topk_idx": torch.zeros(24, dtype=torch.int64)}, ValueError,
     "recv_topk_idx must be 2-D [tokens, topk], got shape [24]"),
    ({"recv_topk_idx": torch.zeros(4, 6, dtype=torch.int64).t()}, ValueError,
     "recv_topk_idx must be contiguous"),
    ({"psum_recv_per_rank": torch.tensor([4])}, TypeError,
     "psum_recv_per_rank must be an int32 tensor, got Long"),
    ({"psum_recv_per_rank": _int32()}, ValueError,
     "psum_recv_per_rank must be a non-empty 1-D tensor, got shape []"),
    ({"psum_recv_per_rank": _int32(0)}, ValueError,
     "psum_recv_per_rank must be a non-empty 1-D tensor, got shape [0]"),
    ({"psum_recv_per_rank": _int32(2, 2)}, ValueError,
     "psum_recv_per_rank must be a non-empty 1-D tensor, got shape [2, 2]"),
    ({"psum_recv_per_rank": _int32(8)[::2]}, ValueError, "psum_recv_per_rank must be contiguous"),
    ({"psum_recv_per_rank": _int32(4).to("meta")}, ValueError,
     "psum_recv_per_rank must be on the same device as recv_topk_idx (cpu), got meta"),
    ({"rank_expert_offset": -1}, ValueError, "rank_expert_offset must be in [0, 2^31), got -1"),
    ({"rank_expert_offset": 2**31}, ValueError, "rank_expert_offset must be in [0, 2^31)"),
    ({"global_num_experts": -1}, ValueError, "global_num_experts must be in [0, 2^31), got -1"),
    ({"local_num_experts": -1}, ValueError, "local_num_experts must be in [0, 1024], got -1"),
    ({"local_num_experts": 1025}, ValueError, "local_num_experts must be in [0, 1024], got 1025"),
    ({"block_size": 0}, ValueError, "block_size must be in [1, 2^31), got 0"),
    ({"block_size": 2**31}, ValueError, "block_size must be in [1, 2^31)"),
    ({"block_size": 2**28}, ValueError, "block_size=268435456 with 24 routes and local_num_experts=8 "
                                        "needs sorted_ids of 2147483664 elements"),
    ({"sorted_ids": torch.zeros(48, dtype=torch.int64)}, TypeError,
     "sorted_ids must be an int32 tensor, got Long"),
    ({"sorted_ids": _int32(96)[::2]}, ValueError, "sorted_ids must be contiguous"),
    ({"sorted_ids": _int32(47)}, ValueError,
     "sorted_ids must have 48 elements for 24 routes, local_num_experts=8, block_size=4; got 47"),
    ({"sorted_ids": _int32(49)}, ValueError, "sorted_ids must have 48 elements"),
    ({"expert_ids": _int32(11)}, ValueError,
     "expert_ids must have 12 elements (one per block of sorted_ids), got 11"),
    ({"expert_ids": _int32(12).to("meta")}, ValueError,
     "expert_ids must be on the same device as recv_topk_idx (cpu), got meta"),
    ({"num_tokens_post_pad": _int32(2)}, ValueError,
     "num_tokens_post_pad must have exactly one element, got 2"),
    ({"scatter_idx": _int32(23, 1)}, ValueError,
     "scatter_idx must have 24 elements (one per route), got 23"),
    ({"scatter_idx": _int32(1, 48)[:, ::2]}, ValueError, "scatter_idx must be contiguous"),
    ({"scatter_idx": torch.zeros(24, 1)}, TypeError, "scatter_idx must be an int32 tensor, got Float"),
    (_shared, ValueError, "sorted_ids and expert_ids overlap in memory"),
    (_ids_over_sorted, ValueError, "recv_topk_idx and sorted_ids overlap in memory"),
    (_psum_in_scatter, ValueError, "scatter_idx and psum_recv_per_rank overlap in memory"),
]


@pytest.mark.parametrize("change,error,words", BAD, ids=[f"{i}-{w[:40]}" for i, (_, _, w) in enumerate(BAD)])
def test_bad_input_names_the_argument(change: object, error: type, words: str) -> None:
    """On CPU (devices are mixed on purpose in some cases): the error, its
    words, and every tensor as it was."""
    args = _valid_args("cpu")
    args.update(change(args) if callable(change) else change)  # type: ignore[operator]
    before = {k: v.clone() for k, v in args.items()
              if isinstance(v, torch.Tensor) and v.device.type != "meta"}
    with pytest.raises(error, match=re.escape(words)):
        try:
            OUT(**args)
        except ValueError as exc:
            raise checks.typed_error(exc) from None
    for name, t in before.items():
        assert torch.equal(args[name], t), f"{name} was written"  # type: ignore[arg-type]


@pytest.mark.parametrize("change", [
    {"sorted_ids": _int32(47)}, {"expert_ids": _int32(13)}, {"num_tokens_post_pad": _int32(0)},
    {"scatter_idx": _int32(25, 1)}, {"block_size": 8}, {"local_num_experts": 3},
    {"recv_topk_idx": torch.zeros(6, 5, dtype=torch.int64)},
])
def test_fake_kernel_checks_sizes_in_the_same_words(change: dict[str, object]) -> None:
    """Every tensor on meta runs the fake kernel: it refuses wrong buffer sizes
    with the C++ op's message."""
    args = _valid_args("cpu")
    args.update(change)
    with pytest.raises(ValueError) as on_cpu:
        OUT(**args)
    meta = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises(ValueError) as on_meta:
        OUT(**meta)
    assert str(on_meta.value) == str(on_cpu.value)
    OUT(**{k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in _valid_args("cpu").items()})


@pytest.mark.parametrize("change,error,words", [
    ({"recv_topk_idx": [[0, 1]]}, TypeError, "recv_topk_idx must be a torch.Tensor, got list"),
    ({"psum_recv_per_rank": 4}, TypeError, "psum_recv_per_rank must be a torch.Tensor, got int"),
    ({"block_size": 16.0}, TypeError, "block_size must be an int, got float"),
    ({"local_num_experts": True}, TypeError, "local_num_experts must be an int, got bool"),
    ({"recv_topk_idx": torch.zeros(3, 2, dtype=torch.int32)}, TypeError,
     "recv_topk_idx must be an int64 tensor"),
    ({"block_size": 0}, ValueError, "block_size must be in [1, 2^31), got 0"),
    ({"block_size": 2**40}, ValueError, "block_size must be in [1, 2^31)"),
    ({"block_size": 2**30}, ValueError, "needs sorted_ids of"),
    ({"local_num_experts": 1025}, ValueError, "local_num_experts must be in [0, 1024]"),
    ({"rank_expert_offset": -8}, ValueError, "rank_expert_offset must be in [0, 2^31)"),
])
def test_bad_input_through_the_function(change: dict[str, object], error: type, words: str) -> None:
    """The function's own type checks, and the op's errors as the function
    raises them (type errors as TypeError; no buffer allocated from bad sizes)."""
    ids = torch.tensor([[0, 1], [2, -1], [1, 1]])
    kwargs: dict[str, object] = dict(recv_topk_idx=ids, psum_recv_per_rank=_psum(3),
                                     rank_expert_offset=8, global_num_experts=32,
                                     local_num_experts=8, block_size=4)
    kwargs.update(change)
    with pytest.raises(error, match=re.escape(words)):
        fused_globalize_align_block_size(**kwargs)  # type: ignore[arg-type]
    assert ids.tolist() == [[0, 1], [2, -1], [1, 1]]


@CUDA
def test_cuda_without_a_kernel_is_not_implemented() -> None:
    if torch._C._dispatch_has_kernel_for_dispatch_key(OP_NAME, "CUDA"):
        pytest.skip("this build has a CUDA kernel for the op")
    ids = torch.zeros(3, 2, dtype=torch.int64, device="cuda")
    with pytest.raises(NotImplementedError, match=r"fused_globalize_align_block_size.*CUDA.*cuda:0"):
        fused_globalize_align_block_size(ids, _psum(3, device="cuda"), 0, 8, 8, 4)
    assert (ids == 0).all()


# --------------------------------------------------------------------------- CUDA


@CUDA
@pytest.mark.parametrize("n,topk,local_e,block_size", [
    # one fused launch: 1 to 32 warps; 64 experts (block scan); block_size up to 1024 and past it
    (1, 8, 32, 16), (8, 8, 16, 16), (48, 8, 32, 64), (128, 8, 32, 64),
    (4, 4, 32, 1024), (8, 8, 64, 2048),
    # the globalize pass, then the spread kernel (512 routes over 1024 experts:
    # the fused kernel's rows would not fit its shared memory)
    (64, 8, 1024, 16), (256, 8, 32, 64), (500, 8, 8, 16), (5000, 1, 8, 4096), (1024, 8, 16, 128),
    # the tiled kernels, globalizing as they go, with and without the scan kernel
    (4096, 8, 32, 128), (16384, 8, 32, 64), (2048, 8, 1024, 16), (9000, 4, 1024, 256),
])
def test_cuda_launch_regimes(n: int, topk: int, local_e: int, block_size: int) -> None:
    """Decode to prefill sizes of DeepEP-v2 ranks, so each CUDA path runs:
    the fused launch (up to 1024 routes), the globalize pass followed by the
    spread kernel, and the tiled kernels (with and without the scan kernel)
    that globalize themselves: equal to the oracle, a quarter of the rows not
    real."""
    _need_kernel("cuda")
    gen = torch.Generator().manual_seed(n * topk + local_e)
    ids = torch.randint(-1, local_e + 2, (n, topk), generator=gen)
    ints = (3 * local_e, 8 * local_e, local_e, block_size)
    _check(ids, _psum(n - n // 4), ints, True, "cuda", f"{n}x{topk} L={local_e} B={block_size}")


def _tiled_fuzz_cases(chunk: int) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int],
                                                  bool, str]]:
    """Random calls of the tiled kernels' sizes (2,048 to 65,536 routes) that
    take them (cuda_globalize_plan: folded), with global counts cutting into
    the rank's experts, real-row counts from negative to past the end, ids
    around [0, L) and past 32 bits, with and without scatter_idx."""
    gen = torch.Generator().manual_seed(2000 + chunk)

    def draw(low: int, high: int) -> int:  # in [low, high]
        return int(torch.randint(low, high + 1, (), generator=gen))

    cases = []
    for k in range(12):
        topk = (1, 2, 6, 8, 10)[draw(0, 4)]
        n = draw(2048, 65536) // topk
        local_e = (8, 16, 32, 64, 128, 1024)[draw(0, 5)]
        block_size = (1, 16, 64, 128, draw(2, 300))[draw(0, 4)]
        plan = cuda_globalize_plan(n * topk, local_e, block_size)
        if not plan.folded:
            continue
        offset = draw(0, 7) * local_e + draw(0, 2)
        global_e = max(0, offset + local_e + draw(-local_e - 2, 8))
        ids = torch.randint(-3, local_e + 4, (n, topk), generator=gen)
        if k % 3 == 0:
            wide = torch.rand(ids.shape, generator=gen) < 0.2
            ids = torch.where(wide, ids + torch.randint(-4, 4, ids.shape, generator=gen) * 2**32, ids)
        psum = _psum((draw(0, n), -1, n + 5, n)[k % 4])
        what = f"chunk {chunk} case {k}: {n}x{topk} L={local_e} B={block_size} ({plan.align_regime})"
        cases.append((ids, psum, (offset, global_e, local_e, block_size), bool(k % 2), what))
    return cases


@pytest.mark.skipif(not _ops.has_backend("cuda"), reason="this build has no CUDA kernels")
def test_tiled_fuzz_draws_tiled_calls() -> None:
    """Most drawn calls take the tiled kernels (host plan, no GPU needed), the
    scan kernel's regime among them."""
    cases = [c for chunk in range(4) for c in _tiled_fuzz_cases(chunk)]
    assert len(cases) >= 32, len(cases)
    assert any("scan kernel" in c[4] for c in cases) and any("prefix" in c[4] for c in cases)


@CUDA
@pytest.mark.parametrize("chunk", range(4))
def test_cuda_tiled_kernels_globalize_fuzz(chunk: int) -> None:
    """The tiled kernels compute each route's bin and rewrite the ids
    themselves (_tiled_fuzz_cases)."""
    _need_kernel("cuda")
    for ids, psum, ints, scatter, what in _tiled_fuzz_cases(chunk):
        _check(ids, psum, ints, scatter, "cuda", what)


@CUDA
@pytest.mark.parametrize("n", [64, 512, 4096])  # fused; pass + spread; tiled, folded
def test_cuda_graph_replays_with_the_current_row_count(n: int, launch_mode: bool) -> None:
    """Captured once in a CUDA graph, the function reads the ids and the row
    count (psum's last entry) at replay, not at capture: each replay, with
    new values copied into the captured inputs, equals the oracle."""
    _need_kernel("cuda")
    topk, ints = 8, (64, 256, 32, 16)
    ids = torch.zeros(n, topk, dtype=torch.int64, device="cuda")
    psum = _psum(n, device="cuda")
    fused_globalize_align_block_size(ids.clone(), psum, *ints, return_scatter_idx=True)  # warm-up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fused_globalize_align_block_size(ids, psum, *ints, return_scatter_idx=True)
    gen = torch.Generator().manual_seed(7)
    for num_recv in (n, 17, 0, n // 2 + 8):
        new_ids = torch.randint(-1, 34, (n, topk), generator=gen)
        new_psum = _psum(num_recv)
        ids.copy_(new_ids)
        psum.copy_(new_psum)
        graph.replay()
        torch.cuda.synchronize()
        want = reference(new_ids.clone(), new_psum, *ints, True)
        _assert_equal(out, want, f"replay with psum[-1]={num_recv}")


# --------------------------------------------------------------------------- opcheck, compile


@pytest.mark.parametrize("n,topk,local_e,block_size,scatter", [
    (0, 8, 28, 16, True), (7, 6, 28, 16, False), (64, 8, 32, 64, True), (257, 16, 28, 128, True),
])
def test_opcheck(device: str, n: int, topk: int, local_e: int, block_size: int, scatter: bool) -> None:
    _need_kernel(device)
    gen = torch.Generator().manual_seed(n)
    ids = torch.randint(-1, local_e, (n, topk), generator=gen).to(device)
    ints = (2 * local_e, 4 * local_e, local_e, block_size)
    bufs = _buffers(n * topk, local_e, block_size, scatter, device)
    torch.library.opcheck(OUT.default, (ids, _psum(round(n * 0.75), device=device), *ints, *bufs))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(device: str, backend: str) -> None:
    """torch.compile(fullgraph=True) of a caller of the function equals eager,
    in-place rewrite included."""
    _need_kernel(device)

    def decode_step(ids: torch.Tensor, psum: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = fused_globalize_align_block_size(ids, psum, 56, 112, 28, 16, return_scatter_idx=True)
        return (out[0] + 0, *out[1:])  # something after the op to trace

    torch._dynamo.reset()
    compiled = torch.compile(decode_step, fullgraph=True, backend=backend)
    for n in (7, 64):
        gen = torch.Generator().manual_seed(n)
        ids = torch.randint(-1, 28, (n, 8), generator=gen).to(device)
        psum = _psum(round(n * 0.75), device=device)
        eager_ids, compiled_ids = ids.clone(), ids.clone()
        want = decode_step(eager_ids, psum)
        got = compiled(compiled_ids, psum)
        _assert_equal(got, tuple(t.cpu() for t in want), f"compiled n={n}")
        assert torch.equal(compiled_ids, eager_ids), f"in place, n={n}"
