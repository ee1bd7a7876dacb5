"""The op inside a CUDA runtime as vLLM uses it: CUDA graphs, torch.compile,
several streams and threads at once, programmatic dependent launch, and long
runs that must not leak memory.
Every result is compared to the pure-torch reference. CUDA only (skipped
without a device and the plugin's CUDA kernel).

Environment:

- ``VLLM_MOE_ALIGN_GRAPH_REPLAYS``: replays per captured graph (default 1000).
- ``VLLM_MOE_ALIGN_MEMORY_CALLS``: calls of the memory test (default 20,000;
  ``make stress-gpu`` runs 100,000).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
from helpers import HAS_CUDA, assert_same, env_int, poisoned, random_expert_map, random_routes

from vllm_moe_align_plugin import contract as C
from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.api import drop_in_for, op_level_for
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and the plugin's CUDA kernel"),
]


GRAPH_REPLAYS = env_int("VLLM_MOE_ALIGN_GRAPH_REPLAYS", 1000)
MEMORY_CALLS = env_int("VLLM_MOE_ALIGN_MEMORY_CALLS", 20_000)

# Shapes across the kernels' size regimes: (numel, num_experts, block_size,
# ids dtype, expert_map mode, return_scatter_idx).
SHAPES = [
    (64 * 8, 256, 16, torch.int32, "none", False),                 # spread, tiles of 32
    (8192, 64, 64, torch.int64, "map_while_counting", True),        # spread, tiles of 64
    (8 * 4096, 128, 64, torch.int32, "map_after", False),           # tiled, prefix in each CTA
    (40960, 512, 64, torch.int16, "map_while_counting", True),      # tiled, int16 widened first
    (300_000, 1024, 128, torch.int64, "none", True),                # tiled with the scan kernel
    (70_000, 4096, 32, torch.int32, "map_after", False),            # scan kernel, E at the limit
]
SHAPE_IDS = [f"{n}x{e}x{b}-{str(d)[6:]}-{m}{'-scatter' if s else ''}" for n, e, b, d, m, s in SHAPES]


def _map_for(num_experts: int, map_mode: str, device: str) -> Optional[torch.Tensor]:
    return None if map_mode == "none" else random_expert_map(num_experts, seed=num_experts, device=device)


def _align(ids: torch.Tensor, block_size: int, num_experts: int, emap: Optional[torch.Tensor],
           map_mode: str, scatter: bool) -> tuple[torch.Tensor, ...]:
    """The drop-in (vLLM 0.33's signature) with the shape's options."""
    return moe_align_block_size(ids, block_size, num_experts, emap, False,
                                map_mode == "map_while_counting", return_scatter_idx=scatter)


def _want(ids: torch.Tensor, block_size: int, num_experts: int, emap: Optional[torch.Tensor],
          map_mode: str, scatter: bool) -> tuple[torch.Tensor, ...]:
    """The reference on the tensors' own device (plain torch ops, bit-exact)."""
    return reference(ids, block_size, num_experts, emap, False, map_mode == "map_while_counting",
                     return_scatter_idx=scatter)


def _equal(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> bool:
    return len(got) == len(want) and all(
        g.dtype == w.dtype and g.shape == w.shape and torch.equal(g, w) for g, w in zip(got, want))


def _fresh_ids(step: int, numel: int, num_experts: int, dtype: torch.dtype,
               gen: torch.Generator) -> torch.Tensor:
    """New contents for step ``step``, on the GPU: uniform ids, ids with
    invalid ones, a few hot experts, or every route on one expert."""
    kind = step % 4
    if kind == 0:
        ids = torch.randint(0, num_experts, (numel,), generator=gen, device="cuda")
    elif kind == 1:
        ids = torch.randint(-3, num_experts + 3, (numel,), generator=gen, device="cuda")
    elif kind == 2:
        hot = torch.randint(0, num_experts, (4,), generator=gen, device="cuda")
        ids = hot[torch.randint(0, 4, (numel,), generator=gen, device="cuda")]
    else:
        ids = torch.full((numel,), step % num_experts, device="cuda")
    return ids.to(dtype)


# --- CUDA graphs ---------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_cuda_graph_replays_with_new_inputs(shape: tuple, launch_mode: bool) -> None:
    """The drop-in captured once per shape, then replayed GRAPH_REPLAYS times,
    each time after copying new ids into the captured input: every replay's
    outputs equal the reference of that replay's ids."""
    numel, E, B, dtype, map_mode, scatter = shape
    gen = torch.Generator(device="cuda").manual_seed(numel)
    static_ids = _fresh_ids(0, numel, E, dtype, gen).view(-1, 8 if numel % 8 == 0 else 1)
    emap = _map_for(E, map_mode, "cuda")

    side = torch.cuda.Stream()  # warm-up off the capture, as torch's docs do
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            _align(static_ids, B, E, emap, map_mode, scatter)
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = _align(static_ids, B, E, emap, map_mode, scatter)

    for step in range(GRAPH_REPLAYS):
        static_ids.copy_(_fresh_ids(step + 1, numel, E, dtype, gen).view_as(static_ids))
        graph.replay()
        want = _want(static_ids, B, E, emap, map_mode, scatter)
        if not _equal(static_out, want):
            assert_same(static_out, want, f"replay {step} of {numel}x{E}x{B} {map_mode}")
            raise AssertionError(f"replay {step}: outputs differ from the reference")


# Decode shapes of a router chain (tokens, experts, top-k): 1x8 of 256
# experts, DeepSeek-V2-Lite (64, top-6), Qwen3-30B-A3B (128, top-8).
CHAIN_SHAPES = ((1, 256, 8), (1, 64, 6), (1, 128, 8), (2, 64, 6), (8, 128, 8))


@pytest.mark.parametrize("tokens,num_experts,topk", CHAIN_SHAPES)
def test_router_chain_in_a_graph_reads_what_topk_wrote(tokens: int, num_experts: int,
                                                       topk: int, launch_mode: bool) -> None:
    """Router logits -> top-k -> int32 cast -> align, captured in one graph
    as vLLM captures a decode step, replayed with new logits: the align
    kernel must read the ids that this replay's cast wrote."""
    gen = torch.Generator(device="cuda").manual_seed(tokens * num_experts + topk)
    logits = torch.randn(tokens, num_experts, device="cuda", generator=gen)

    def chain() -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        ids = torch.topk(logits, topk, dim=-1).indices.to(torch.int32)
        return ids, moe_align_block_size(ids, 16, num_experts)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            chain()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_ids, static_out = chain()
    for step in range(GRAPH_REPLAYS):
        logits.copy_(torch.randn(tokens, num_experts, device="cuda", generator=gen))
        graph.replay()
        want = reference(static_ids, 16, num_experts)
        if not _equal(static_out, want):
            assert_same(static_out, want, f"replay {step} of {tokens}x{num_experts} top-{topk}")
            raise AssertionError(f"replay {step}: outputs differ from the reference")


def test_cuda_graph_of_the_op_level_wrapper(launch_mode: bool) -> None:
    """vLLM's op-level call (caller buffers, expert_map mapped while counting)
    captured in a graph: 200 replays with new ids equal the reference."""
    numel, E, B = 4096, 256, 16
    gen = torch.Generator(device="cuda").manual_seed(1)
    ids = _fresh_ids(0, numel, E, torch.int32, gen)
    emap = random_expert_map(E, seed=2, device="cuda")
    size = C.NEWEST.max_num_tokens_padded(numel, E, B, False)
    out = (poisoned(size, "cuda"), poisoned(-(-size // B), "cuda"), poisoned(1, "cuda"),
           poisoned(0, "cuda", (numel, 1)))
    op = op_level_for(C.NEWEST)
    op(ids, E, B, *out[:3], emap, out[3])  # warm-up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        op(ids, E, B, *out[:3], emap, out[3])
    for step in range(200):
        ids.copy_(_fresh_ids(step + 1, numel, E, torch.int32, gen))
        graph.replay()
        want = reference(ids, B, E, emap, False, True, return_scatter_idx=True)
        if not _equal(out, want):
            assert_same(out, want, f"op-level replay {step}")


# --- programmatic dependent launch --------------------------------------------

# (numel, num_experts): the tiny, spread, tiled and tiled-with-scan regimes
WAIT_SHAPES = ((8, 256), (512, 256), (32768, 128), (300_000, 1024))


def _late_writers() -> tuple[Callable[..., None], Callable[..., None]]:
    """Two Triton kernels for the wait test (skips without Triton's
    programmatic dependent launch). ``write(src, dst, zero, n, spin)``, launched
    the ordinary way, lets the next kernel in the stream launch at once, then
    spends ``spin`` dependent steps before it copies ``src`` to ``dst``.
    ``peek(dst, out, n)``, launched as a dependent without waiting, copies
    ``dst`` as it finds it: the stale values a kernel that does not wait reads."""
    triton = pytest.importorskip("triton")
    tl = pytest.importorskip("triton.language")
    try:
        from triton.language.extra.cuda import gdc_launch_dependents
    except ImportError:
        pytest.skip("this Triton has no programmatic dependent launch")

    @triton.jit
    def write(src, dst, zero, n, spin, BLOCK: tl.constexpr):
        gdc_launch_dependents()
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        k = tl.load(src + offs, mask=mask, other=0)
        z = tl.load(zero)  # 0 at run time, unknown to the compiler: the loop stays
        x = k
        for _ in range(spin):
            x = x * 6364136223846793005 + 1442695040888963407
        tl.store(dst + offs, k + x * z, mask=mask)

    @triton.jit
    def peek(dst, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out + offs, tl.load(dst + offs, mask=mask, other=0), mask=mask)

    def run_write(src: torch.Tensor, dst: torch.Tensor, zero: torch.Tensor, spin: int) -> None:
        write[(triton.cdiv(src.numel(), 1024),)](src, dst, zero, src.numel(), spin, BLOCK=1024)

    def run_peek(dst: torch.Tensor, out: torch.Tensor) -> None:
        peek[(triton.cdiv(dst.numel(), 1024),)](dst, out, dst.numel(), BLOCK=1024, launch_pdl=True)

    return run_write, run_peek


@pytest.mark.parametrize("launch_mode", [True], ids=["dependent-launch"], indirect=True)
@pytest.mark.parametrize("numel,num_experts", WAIT_SHAPES)
def test_dependent_launch_waits_for_the_kernel_before_it(numel: int, num_experts: int,
                                                         launch_mode: bool) -> None:
    """With dependent launch on, the align kernels may start as soon as the
    kernel before them lets them; they must still read the ids that kernel
    writes at its end. The kernel before them lets dependents launch at its
    start, then writes the ids after a long busy loop, over ids that held
    another expert. A dependent that does not wait (``peek``) sees the old
    ids, which shows the test can fail; the align call must see the new."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("programmatic dependent launch needs compute capability 9.0")
    write, peek = _late_writers()
    gen = torch.Generator(device="cuda").manual_seed(numel)
    zero = torch.zeros(1, dtype=torch.int64, device="cuda")
    old = torch.full((numel,), num_experts - 1, dtype=torch.int64, device="cuda")
    ids, seen = torch.empty_like(old), torch.empty_like(old)
    stale = 0
    for step in range(5):
        want_ids = torch.randint(0, num_experts - 1, (numel,), device="cuda", generator=gen)
        ids.copy_(old)
        write(want_ids, ids, zero, 200_000)
        peek(ids, seen)
        torch.cuda.synchronize()
        stale += int(not torch.equal(seen, want_ids))
        ids.copy_(old)
        write(want_ids, ids, zero, 200_000)
        got = moe_align_block_size(ids, 16, num_experts)  # launched as a dependent
        want = reference(want_ids, 16, num_experts)
        assert_same(got, want, f"{numel} routes over {num_experts} experts, step {step}")
    assert stale > 0, "no dependent saw the old ids: the test could not have failed"


# --- torch.compile ---------------------------------------------------------------

def _moe_step(ids: torch.Tensor, emap: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A caller as vLLM's fused MoE has one: the drop-in, then work on its outputs."""
    sorted_ids, expert_ids, post_pad, scatter = moe_align_block_size(
        ids, 16, 64, emap, False, True, return_scatter_idx=True)
    return sorted_ids, expert_ids * 1, post_pad + 0, scatter


def _compile_inputs(numel: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = random_routes(numel, 64, top_k=8 if numel % 8 == 0 else 1, invalid_frac=0.05, seed=seed)
    return ids.cuda(), random_expert_map(64, seed=seed, device="cuda")


def test_compile_fullgraph_matches_eager() -> None:
    """torch.compile(fullgraph=True) (inductor) around a caller of the drop-in:
    the same results as eager and as the reference, for new contents and a
    new shape."""
    torch._dynamo.reset()
    compiled = torch.compile(_moe_step, fullgraph=True)
    for numel, seed in [(512, 1), (512, 2), (4000, 3), (70_000, 4)]:
        ids, emap = _compile_inputs(numel, seed)
        eager = _moe_step(ids, emap)
        got = compiled(ids, emap)
        assert_same(got, eager, f"compiled vs eager, numel={numel}")
        assert_same(got, reference(ids, 16, 64, emap, False, True, True), f"vs reference, numel={numel}")


def test_compile_dynamic_shapes_match_eager() -> None:
    """torch.compile(fullgraph=True, dynamic=True): one graph for every size,
    across the contract's small-input shrink (numel < num_experts) and the
    kernels' regimes: the same results as eager."""
    torch._dynamo.reset()
    compiled = torch.compile(_moe_step, fullgraph=True, dynamic=True)
    for numel in (7, 40, 64, 1000, 2049, 40_000):
        ids, emap = _compile_inputs(numel, numel)
        assert_same(compiled(ids, emap), _moe_step(ids, emap), f"dynamic, numel={numel}")


def test_compile_reduce_overhead_matches_eager() -> None:
    """torch.compile(mode="reduce-overhead") (CUDA graphs through inductor):
    12 calls with new contents each equal eager, and inductor did not skip
    CUDA graphs because of the op."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(_moe_step, mode="reduce-overhead")
    for seed in range(12):
        ids, emap = _compile_inputs(4096, seed)
        torch.compiler.cudagraph_mark_step_begin()
        got = tuple(t.clone() for t in compiled(ids, emap))  # graph outputs are reused
        assert_same(got, _moe_step(ids, emap), f"reduce-overhead call {seed}")
    skips = dict(counters["inductor"])
    assert skips.get("cudagraph_skips", 0) == 0, f"inductor skipped CUDA graphs: {skips}"


# --- streams -----------------------------------------------------------------------

SLEEP_CYCLES = 200_000_000  # ~0.1 s of GPU time at 2 GHz


def test_op_runs_on_the_current_stream() -> None:
    """On a side stream, behind a long GPU sleep, new ids are copied into the
    input and the op called: its result is that of the new ids (so it ran on
    the side stream, after the copy), and the call returned while the stream
    was still busy (no host synchronisation inside the op)."""
    numel, E, B = 40_000, 256, 64
    ids = torch.zeros(numel, dtype=torch.int32, device="cuda")
    new = random_routes(numel, E, invalid_frac=0.1, seed=11).cuda()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # kernels loaded, the side stream's allocator pool warm
        moe_align_block_size(ids, B, E)
    torch.cuda.synchronize()
    done = torch.cuda.Event()
    with torch.cuda.stream(side):
        torch.cuda._sleep(SLEEP_CYCLES)
        ids.copy_(new)
        got = moe_align_block_size(ids, B, E)
        done.record(side)
    returned_early = not done.query()
    torch.cuda.synchronize()
    assert_same(got, reference(new.cpu(), B, E), "side stream after a sleep")
    assert returned_early, "the call waited for the stream: the op synchronises the host"


def test_four_streams_at_once() -> None:
    """Four streams, each with its own input (different sizes, dtypes, maps),
    all enqueued behind short sleeps so they overlap, 25 rounds: every result
    equals the reference of its own input."""
    streams = [torch.cuda.Stream() for _ in range(4)]
    shapes = [SHAPES[0], SHAPES[1], SHAPES[3], SHAPES[4]]
    for rnd in range(25):
        jobs = []
        for k, (numel, E, B, dtype, map_mode, scatter) in enumerate(shapes):
            ids = random_routes(numel, E, dtype=dtype, invalid_frac=0.1, seed=rnd * 10 + k,
                                skew=rnd % 2 == 1)
            emap = _map_for(E, map_mode, "cpu")
            jobs.append((ids, emap, (E, B, map_mode, scatter),
                         ids.cuda(), None if emap is None else emap.cuda()))
        outs = []
        for stream, (_, _, (E, B, map_mode, scatter), ids_d, emap_d) in zip(streams, jobs):
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                torch.cuda._sleep(1_000_000)
                outs.append(_align(ids_d, B, E, emap_d, map_mode, scatter))
        torch.cuda.synchronize()
        for k, (out, (ids, emap, (E, B, map_mode, scatter), _, _)) in enumerate(zip(outs, jobs)):
            assert_same(out, _want(ids, B, E, emap, map_mode, scatter), f"round {rnd} stream {k}")


def test_four_threads_four_streams() -> None:
    """Four host threads, each calling the op 100 times on its own stream with
    its own inputs: every result equals the reference."""
    errors: list[str] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        numel, E, B, dtype, map_mode, scatter = SHAPES[k + 1]
        stream = torch.cuda.Stream()
        emap = _map_for(E, map_mode, "cuda")
        gen = torch.Generator(device="cuda").manual_seed(100 + k)
        barrier.wait()
        try:
            with torch.cuda.stream(stream):
                for step in range(100):
                    ids = _fresh_ids(step, numel, E, dtype, gen)
                    got = _align(ids, B, E, emap, map_mode, scatter)
                    if not _equal(got, _want(ids, B, E, emap, map_mode, scatter)):
                        errors.append(f"thread {k} step {step}: differs from the reference")
                        return
            stream.synchronize()
        except Exception as exc:  # reported by the main thread
            errors.append(f"thread {k}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_ids_on_another_gpu_than_the_current_one() -> None:
    """With cuda:0 current, ids on cuda:1: the op runs on cuda:1 (outputs
    there) and equals the reference."""
    ids = random_routes(40_000, 256, invalid_frac=0.1, seed=13)
    emap = random_expert_map(256, seed=13)
    with torch.cuda.device(0):
        got = moe_align_block_size(ids.to("cuda:1"), 64, 256, emap.to("cuda:1"), False, True,
                                   return_scatter_idx=True)
    assert all(t.device == torch.device("cuda:1") for t in got)
    assert_same(got, reference(ids, 64, 256, emap, False, True, True), "cuda:1")


# --- memory ------------------------------------------------------------------------

def _memory_workload(device: str) -> list[tuple[Callable[[], tuple[torch.Tensor, ...]],
                                                 tuple[torch.Tensor, ...]]]:
    """(call, expected result) pairs covering every allocation the op makes:
    outputs, scratch of the tiled regimes, the widened copy of int16 ids, the
    contiguous copy of a transposed view, caller buffers of the op-level
    wrapper, an older contract's drop-in."""
    work = []
    for numel, E, B, dtype, map_mode, scatter in SHAPES:
        ids = random_routes(numel, E, dtype=dtype, invalid_frac=0.1, seed=numel).to(device)
        emap = _map_for(E, map_mode, device)
        work.append(((lambda i=ids, e=emap, E=E, B=B, m=map_mode, s=scatter: _align(i, B, E, e, m, s)),
                     _want(ids.cpu(), B, E, None if emap is None else emap.cpu(), map_mode, scatter)))
    ids_t = random_routes(8192, 128, top_k=8, seed=3).t().to(device)
    work.append((lambda: moe_align_block_size(ids_t, 16, 128), reference(ids_t.cpu(), 16, 128)))
    old = drop_in_for(C.V0_9)
    ids_old = random_routes(3000, 64, invalid_frac=0.1, seed=4).to(device)
    work.append((lambda: old(ids_old, 32, 64, None, True),
                 reference(ids_old.cpu(), 32, 64, None, True, contract=C.V0_9)))
    size = C.NEWEST.max_num_tokens_padded(50_000, 256, 16, False)
    bufs = (poisoned(size, device), poisoned(-(-size // 16), device), poisoned(1, device))
    ids_op = random_routes(50_000, 256, seed=5).to(device)

    def op_level() -> tuple[torch.Tensor, ...]:
        op_level_for(C.NEWEST)(ids_op, 256, 16, *bufs)
        return bufs

    work.append((op_level, reference(ids_op.cpu(), 16, 256)))
    return work


def test_many_calls_leave_gpu_memory_where_it_was() -> None:
    """MEMORY_CALLS calls cycling through every kind of call (after a warm-up):
    torch.cuda.memory_allocated() is exactly what it was, and the last result
    of each kind still equals the reference."""
    work = _memory_workload("cuda")
    for _ in range(3):
        for fn, _expected in work:
            fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    reserved = torch.cuda.memory_reserved()
    for i in range(MEMORY_CALLS):
        work[i % len(work)][0]()
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated()
    assert after == base, (f"{MEMORY_CALLS} calls: memory_allocated {base} -> {after} "
                           f"(reserved {reserved} -> {torch.cuda.memory_reserved()})")
    for k, (fn, want) in enumerate(work):
        got = fn()
        assert_same(got[:len(want)], want, f"kind {k} after {MEMORY_CALLS} calls")


def _round_block(nbytes: int) -> int:
    """Bytes the caching allocator books for an allocation (512-byte blocks)."""
    return 0 if nbytes == 0 else -(-nbytes // 512) * 512


@pytest.mark.parametrize("numel,num_experts,dtype", [
    (512, 256, torch.int32), (2048, 4096, torch.int64), (40_960, 512, torch.int16),
    (300_000, 1024, torch.int32), (1 << 20, 4096, torch.int32), (1 << 24, 256, torch.int64),
])
def test_scratch_memory_per_call_is_small(numel: int, num_experts: int, dtype: torch.dtype) -> None:
    """Peak memory of one call beyond its outputs (the scratch): at most one
    int32 per expert per tile (tiles: at most max(SMs, numel / 1024) + 1) plus
    the widened copy of ids that are neither int32 nor int64 (each rounded as
    the caching allocator does, plus its largest unsplit remainder, 1 MiB).
    Prints the measured figure."""
    ids = random_routes(numel, num_experts, dtype=dtype, seed=7).cuda()
    moe_align_block_size(ids, 64, num_experts)  # warm-up: kernel attributes, allocator pools
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = moe_align_block_size(ids, 64, num_experts)
    torch.cuda.synchronize()
    outputs = torch.cuda.memory_allocated() - base  # what stays: the outputs' blocks
    scratch = torch.cuda.max_memory_allocated() - base - outputs
    assert outputs >= sum(t.numel() * t.element_size() for t in out)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    tiles = max(sms, -(-numel // 1024)) + 1
    widened = 4 * numel if dtype not in (torch.int32, torch.int64) else 0
    bound = _round_block(4 * num_experts * tiles) + _round_block(widened) + 2**20
    print(f"scratch per call: numel={numel} E={num_experts} {dtype}: {scratch} bytes "
          f"(outputs {outputs}, bound {bound})")
    assert 0 <= scratch <= bound, f"scratch {scratch} bytes > bound {bound}"


def test_preload_cuda_kernels_on_every_device() -> None:
    from vllm_moe_align_plugin import _ops

    for device in range(torch.cuda.device_count()):
        _ops.preload_cuda_kernels(device)
        ids = random_routes(3000, 64, seed=device).to(f"cuda:{device}")
        assert_same(moe_align_block_size(ids, 16, 64), reference(ids.cpu(), 16, 64))


def test_import_preloads_only_where_a_context_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_moe_align_plugin._ops import cuda_host

    calls: list[Optional[int]] = []
    monkeypatch.setattr(cuda_host, "preload_cuda_kernels", calls.append)
    torch.zeros(1, device="cuda")  # this process has a context on its current device
    cuda_host._preload_if_cuda_is_up()
    assert calls == [torch.cuda.current_device()]

    def boom(device: Optional[int] = None) -> None:
        raise RuntimeError("preload failed")

    monkeypatch.setattr(cuda_host, "preload_cuda_kernels", boom)
    cuda_host._preload_if_cuda_is_up()  # swallowed: a failed preload only costs speed


# A fresh process: importing the plugin must not start CUDA (fork-based
# workers), and the first call after CUDA starts still equals the reference.
_IMPORT_PROBE = """
import torch
from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference
print("CUDA-STARTED-BY-IMPORT", torch.cuda.is_initialized())
ids = torch.randint(0, 8, (100, 2), dtype=torch.int32, device="cuda")
got = moe_align_block_size(ids, 16, 8)
want = reference(ids.cpu(), 16, 8)
print("SAME", all(torch.equal(a.cpu(), b) for a, b in zip(got, want)))
"""


def test_import_does_not_start_cuda() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CUDA-STARTED-BY-IMPORT False" in proc.stdout, proc.stdout
    assert "SAME True" in proc.stdout, proc.stdout
