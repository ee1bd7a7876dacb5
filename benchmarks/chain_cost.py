"""Marginal cost of the align step inside a captured decode chain.

vLLM captures a decode step in a CUDA graph: the router's top-k writes the
ids, the align step sorts them, and the fused-MoE GEMM (a Triton kernel)
reads the align step's outputs. At decode the align step's own work is tiny;
what it adds to the step is its launch and the dependent round trips. This
measures that: a CUDA graph of ``--reps`` copies of the chain

    top-k -> int32 cast -> align -> consumer

against the same graph without the align call (the consumer then reads
outputs computed before capture), both replayed and timed with CUDA events.
The difference per chain is the align step's marginal cost. The consumer is a
one-program Triton kernel that reads ``num_tokens_post_pad`` and the first
blocks of ``sorted_token_ids`` and ``expert_ids``, as the GEMM's prologue does
(torch ops stand in without Triton).

Every implementation's outputs are validated against the contract on the
chain's own ids before timing. Three stand-in kernels take the align call's
place to show how much of its cost any align kernel would pay:

- ``floor``: one empty kernel (one thread, no memory access): what any extra
  kernel node costs in this chain, however little it does;
- ``read``: one CTA of 4 warps (as the plugin's decode kernel) that reads
  the ids and writes one number computed from them: the node plus the one
  dependent round trip every align kernel makes before it can write;
- ``io``: the same CTA reading the ids and then writing every element of
  outputs as large as the align step's, each value depending on the ids:
  a kernel with the align step's memory traffic and no work of its own.

Two more for batches larger than a decode step, where the plugin launches
many CTAs (their number and size are the plugin's own launch plan for the
shape on this GPU, ``_ops.cuda_launch_plan``):

- ``io-grid``: one launch of that grid; every CTA reads all the ids (as the
  plugin's one-launch regime does, so that no CTA waits for another) and
  writes its share of the outputs: the floor of a one-launch design;
- ``io-2``: two launches of that grid; the first sums each CTA's share of
  the ids, the second reads those sums and writes the outputs: the floor of
  a design that passes counts from one kernel to the next.

The ``plugin-pdl`` implementation is the plugin with programmatic dependent
launch on (its kernels may start while the kernel before them finishes).

    python -m benchmarks.chain_cost [--shapes 1x8x256 1x6x64 1x8x128]
                                    [--impls plugin plugin-pdl vllm floor read io io-grid io-2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Union

import torch

from benchmarks.loaders import vllm_impl
from vllm_moe_align_plugin.bench import Impl, markdown_table, plugin_impl, validate

# Decode shapes (tokens x top-k x experts): a 256-expert top-8 router, the
# DeepSeek-V2-Lite shape (64 experts, top-6) and Qwen3-30B-A3B (128, top-8)
DEFAULT_SHAPES = ("1x8x256", "1x6x64", "1x8x128")
FLOOR = "one empty kernel (floor)"
READ = "one CTA reads the ids"
IO = "one CTA reads the ids, writes the outputs"
IO_GRID = "the plugin's grid: every CTA reads the ids, writes its share"
IO_TWO = "two launches of the plugin's grid: sums per CTA, then the outputs"
#: the stand-ins by their ``--impls`` name
STAND_INS = {"floor": FLOOR, "read": READ, "io": IO, "io-grid": IO_GRID, "io-2": IO_TWO}
#: the stand-ins that run on the plugin's grid; the others run ONE_CTA (CTAs, threads)
ON_PLUGIN_GRID = (IO_GRID, IO_TWO)
ONE_CTA = (1, 128)


@dataclass
class Row:
    shape: str
    impl: str
    without_us: float  # one chain without the align call (median over rounds)
    with_us: float  # one chain with it
    marginal_us: float  # median of the per-round differences
    marginal_min_us: float
    marginal_max_us: float


def parse_shape(text: str) -> tuple[int, int, int]:
    """``TxKxE`` -> (tokens, top-k, experts)."""
    try:
        tokens, topk, experts = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected TOKENSxTOPKxEXPERTS, e.g. 1x8x256") \
            from None
    if min(tokens, topk, experts) < 1 or topk > experts:
        raise argparse.ArgumentTypeError(f"shape {text!r}: need 1 <= top-k <= experts and tokens >= 1")
    return tokens, topk, experts


def make_consumer() -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]:
    """The kernel after the align step: reads the post-pad count and the first
    ``PEEK`` slots of both outputs, writes one number."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        def torch_consumer(s: torch.Tensor, e: torch.Tensor, n: torch.Tensor, out: torch.Tensor) -> None:
            out.add_(s[:64].sum() + e[:4].sum() + n[0])

        return torch_consumer

    @triton.jit
    def consume(sorted_ptr, expert_ptr, post_ptr, out_ptr, n_sorted, n_expert, PEEK: tl.constexpr):
        post = tl.load(post_ptr)
        offs = tl.arange(0, PEEK)
        s = tl.load(sorted_ptr + offs, mask=(offs < n_sorted) & (offs < post), other=0)
        e = tl.load(expert_ptr + offs, mask=offs < n_expert, other=0)
        tl.store(out_ptr, tl.sum(s, axis=0) + tl.sum(e, axis=0) + post)

    def triton_consumer(s: torch.Tensor, e: torch.Tensor, n: torch.Tensor, out: torch.Tensor) -> None:
        consume[(1,)](s, e, n, out, s.numel(), e.numel(), PEEK=64)

    return triton_consumer


def plugin_grid(numel: int, experts: int, block: int, sorted_size: int, num_sms: int,
                smem_optin_bytes: int) -> tuple[int, int]:
    """(CTAs, threads per CTA) of the plugin's first kernel for these sizes on
    a GPU with ``num_sms`` SMs: the grid the ``io-grid`` and ``io-2``
    stand-ins launch."""
    from vllm_moe_align_plugin import _ops

    plan = _ops.cuda_launch_plan(numel, experts, block, sorted_size, num_sms=num_sms,
                                 smem_optin_bytes=smem_optin_bytes)
    return plan.ctas, plan.threads


def make_stand_in(name: str, ids: torch.Tensor, outputs: tuple[torch.Tensor, ...],
                  grid: tuple[int, int] = ONE_CTA) -> Callable[[], None]:
    """The kernel(s) that stand in for the align call (``STAND_INS``). Their
    writes go to buffers of their own, as large as ``outputs``; ``grid`` is
    (CTAs, threads per CTA) for ``io-grid`` and ``io-2`` (the others run one
    CTA of 4 warps). One call is checked here before the caller captures it."""
    if name == FLOOR:
        return lambda: torch.cuda._sleep(0)  # one thread that returns at once
    if name not in STAND_INS.values():
        raise ValueError(f"make_stand_in: unknown stand-in {name!r}")
    try:
        from benchmarks import stand_in_kernels as k
    except ImportError:
        raise SystemExit(f"chain_cost: the stand-in {name!r} needs Triton") from None
    ctas, threads = grid if name in ON_PLUGIN_GRID else ONE_CTA
    warps = max(1, min(32, threads // 32))
    sorted_ids, expert_ids, post = (torch.empty_like(t) for t in outputs[:3])
    n_ids, n_sorted, n_expert = ids.numel(), sorted_ids.numel(), expert_ids.numel()
    sorted_share, expert_share = -(-n_sorted // ctas), -(-n_expert // ctas)
    write = name != READ
    sums = torch.empty(ctas, dtype=torch.int32, device=ids.device) if name == IO_TWO else None

    def launch() -> None:
        if name == IO_TWO:
            k.share_sums[(ctas,)](ids, n_ids, sums, -(-n_ids // ctas), BLOCK=1024, num_warps=warps)
            k.from_sums[(ctas,)](sums, ctas, sorted_ids, n_sorted, expert_ids, n_expert, post,
                                 sorted_share, expert_share,
                                 SUMS=max(16, 1 << (ctas - 1).bit_length()), BLOCK=1024,
                                 num_warps=warps)
        else:
            k.touch[(ctas,)](ids, n_ids, sorted_ids, n_sorted, expert_ids, n_expert, post,
                             sorted_share, expert_share, WRITE=write, BLOCK=1024, num_warps=warps)

    launch()
    key = int(ids.sum())
    ok = int(post[0]) == key
    if write:
        ok = ok and torch.equal(sorted_ids.cpu(), key + torch.arange(n_sorted, dtype=torch.int32)) \
            and bool((expert_ids == key).all())
    if not ok:
        raise AssertionError(f"{name}: the stand-in kernel wrote wrong values")
    return launch


def time_graph(graph: torch.cuda.CUDAGraph, replays: int) -> float:
    """Device time of one replay in microseconds (CUDA events around
    ``replays`` back-to-back replays)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    torch.cuda.synchronize()
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000.0 / replays


def measure(what: Union[Impl, str], shape: str, block: int, reps: int, replays: int, rounds: int,
            consumer: Callable[..., None]) -> Row:
    """One row: an implementation's align call in the chain, or one of the
    ``STAND_INS`` (named by its value) where the align call was."""
    impl = what if isinstance(what, Impl) else None
    tokens, topk, experts = parse_shape(shape)
    gen = torch.Generator(device="cuda").manual_seed(tokens * 1000 + experts)
    logits = torch.randn(tokens, experts, device="cuda", generator=gen)
    ids = torch.empty(tokens, topk, dtype=torch.int32, device="cuda")
    idx64 = torch.empty(tokens, topk, dtype=torch.int64, device="cuda")
    vals = torch.empty(tokens, topk, device="cuda")
    out = torch.zeros(1, dtype=torch.int32, device="cuda")
    plugin = plugin_impl()
    align = (impl or plugin).make(ids, experts, block)

    def route() -> None:
        torch.topk(logits, topk, dim=-1, out=(vals, idx64))
        ids.copy_(idx64)  # the int32 cast, right before the align step

    route()
    before = align()  # outputs the chain without align reads
    validate(impl or plugin, before, ids, experts, block)
    stand_in = None
    if isinstance(what, str):
        grid = ONE_CTA
        if what in ON_PLUGIN_GRID:
            props = torch.cuda.get_device_properties(ids.device)
            grid = plugin_grid(ids.numel(), experts, block, before[0].numel(),
                               props.multi_processor_count, props.shared_memory_per_block_optin)
        stand_in = make_stand_in(what, ids, before, grid)

    def step() -> tuple[torch.Tensor, ...]:
        if stand_in is not None:
            stand_in()
            return before
        return align()

    def chain(with_align: bool) -> None:
        for _ in range(reps):
            route()
            outs = step() if with_align else before
            consumer(outs[0], outs[1], outs[2], out)

    graphs = {}
    for with_align in (False, True):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            chain(with_align)  # warm-up (Triton compiles, caching allocator)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            chain(with_align)
        graphs[with_align] = graph

    # the captured align step reads the ids this replay's top-k wrote
    logits.copy_(torch.randn(tokens, experts, device="cuda", generator=gen))
    if impl is not None:
        with torch.cuda.graph(g := torch.cuda.CUDAGraph()):
            route()
            got = align()
        g.replay()
        torch.cuda.synchronize()
        validate(impl, got, ids, experts, block)

    without, with_, diffs = [], [], []
    for _ in range(rounds):
        a = time_graph(graphs[False], replays) / reps
        b = time_graph(graphs[True], replays) / reps
        without.append(a)
        with_.append(b)
        diffs.append(b - a)
    return Row(shape, impl.name if impl else str(what), statistics.median(without), statistics.median(with_),
               statistics.median(diffs), min(diffs), max(diffs))


def run(shapes: Sequence[str], impls: Sequence[Union[Impl, str]], block: int, reps: int, replays: int,
        rounds: int) -> list[Row]:
    consumer = make_consumer()
    return [measure(what, shape, block, reps, replays, rounds, consumer)
            for shape in shapes for what in impls]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), type=str,
                    help="TOKENSxTOPKxEXPERTS (default: %(default)s)")
    ap.add_argument("--block", type=int, default=16, help="block size (default 16, vLLM's at decode)")
    ap.add_argument("--reps", type=int, default=20, help="chains per captured graph")
    ap.add_argument("--replays", type=int, default=50, help="graph replays per timing")
    ap.add_argument("--rounds", type=int, default=7, help="timings per configuration")
    ap.add_argument("--impls", nargs="+", choices=("plugin", "plugin-pdl", "vllm", *STAND_INS),
                    default=["plugin", "vllm", "floor"],
                    help="what takes the align step's place (the last three: stand-in kernels, "
                         "see the module's docstring; default: %(default)s)")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--quiet", action="store_true", help="no table")
    args = ap.parse_args(argv)
    for s in args.shapes:
        try:
            parse_shape(s)
        except argparse.ArgumentTypeError as exc:
            ap.error(str(exc))
    if not torch.cuda.is_available():
        print("chain_cost: needs a CUDA device", file=sys.stderr)
        return 2
    impls: list[Union[Impl, str]] = []
    if "plugin" in args.impls:
        impls.append(plugin_impl())
    if "plugin-pdl" in args.impls:
        impls.append(plugin_impl(dependent_launch=True))
    if "vllm" in args.impls:
        v = vllm_impl()
        if v is None:
            print("chain_cost: vLLM's op not found (install vLLM or set VLLM_MOE_ALIGN_VLLM_OP_SO); "
                  "timing the plugin only", file=sys.stderr)
        else:
            impls.append(v)
    impls += [STAND_INS[name] for name in STAND_INS if name in args.impls]
    rows = run(args.shapes, impls, args.block, args.reps, args.replays, args.rounds)
    rows.sort(key=lambda r: (args.shapes.index(r.shape), r.impl))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    if not args.quiet:
        print(f"{torch.cuda.get_device_name()}, block {args.block}, {args.reps} chains per graph, "
              f"{args.replays} replays, {args.rounds} rounds")
        print(markdown_table(
            ["shape (tokens x top-k x experts)", "implementation", "chain without align us",
             "chain with align us", "marginal us (median)", "marginal us (min-max)"],
            [[r.shape, r.impl, f"{r.without_us:.2f}", f"{r.with_us:.2f}", f"{r.marginal_us:.2f}",
              f"{r.marginal_min_us:.2f}-{r.marginal_max_us:.2f}"] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
