"""Timing of moe_align_block_size implementations, shared by ``vllm-moe-align
bench`` and ``benchmarks/benchmark_moe_align_block_size.py``: the plugin, the
torch reference and the installed vLLM's op here; the benchmark adds the ops
that ``benchmarks/loaders.py`` loads from library files (vLLM's, SGLang's).

Every implementation is called the way its own Python caller calls it
(allocations included) and its outputs are validated against the reference
before it is timed. CUDA times:

- graph: device time per call: ``calls_per_graph`` calls (rotating over
  several inputs) captured in one CUDA graph, the graph replayed, CUDA events,
  median of ``repeats``;
- eager: wall time per call of back-to-back calls, then one synchronize.

CPU times: wall time per call (median of repeats).

``markdown_table`` writes every markdown table of the CLI and of benchmarks/.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from .contract import NEWEST, V0_17, Contract
from .messages import describe
from .reference import moe_align_block_size_reference


@dataclass(frozen=True)
class Case:
    num_tokens: int
    top_k: int
    num_experts: int
    block_size: int

    @property
    def numel(self) -> int:
        return self.num_tokens * self.top_k

    @property
    def label(self) -> str:
        return f"{self.num_tokens}x{self.top_k}, {self.num_experts}, {self.block_size}"


# The shapes every comparison uses: decode to large prefill.
CASES = [
    Case(1, 8, 256, 16), Case(8, 8, 128, 16), Case(32, 8, 128, 16), Case(64, 8, 256, 16),
    Case(256, 8, 256, 16), Case(1, 2, 8, 16), Case(1, 10, 512, 16), Case(256, 10, 512, 16),
    Case(1024, 8, 128, 64), Case(2048, 8, 256, 64), Case(4096, 2, 64, 128),
    Case(4096, 8, 128, 64), Case(4096, 10, 512, 64), Case(8192, 2, 8, 128),
    Case(16384, 4, 128, 128), Case(16384, 8, 256, 128), Case(32768, 8, 128, 128),
    Case(65536, 8, 256, 128),
]
# The serving models' shapes (``benchmarks/vllm_ab/serve``), decode at 1 and 8
# requests and an 8192-token prefill chunk (vLLM's default
# max_num_batched_tokens), with the block size vLLM 0.26's Triton MoE picks
# for them on an H200: DeepSeek-V2-Lite (64 experts, top-6; vLLM's default
# config: 16 up to 32 tokens, 128 above 512) and Qwen3-30B-A3B (128 experts,
# top-8; its tuned config: 16 at 1-64 tokens, 128 from 1024). vLLM 0.26 skips
# the align step itself where tokens x top-k x 4 <= experts (both 1-token rows).
SERVING_CASES = [
    Case(1, 6, 64, 16), Case(8, 6, 64, 16), Case(8192, 6, 64, 128),
    Case(1, 8, 128, 16), Case(8, 8, 128, 16), Case(8192, 8, 128, 128),
]
#: the largest input the torch reference is timed on (it is slow)
REFERENCE_MAX_NUMEL = 1 << 17
QUICK_CASES = [Case(1, 8, 256, 16), Case(256, 8, 256, 16), Case(4096, 2, 64, 128),
               Case(16384, 8, 256, 128)]


# An implementation: given (topk_ids, num_experts, block_size), returns a
# zero-argument callable that runs one call and returns its outputs
# (sorted_ids, expert_ids, num_tokens_post_pad) as its caller sees them.
Maker = Callable[[torch.Tensor, int, int], Callable[[], tuple[torch.Tensor, ...]]]


@dataclass
class Impl:
    name: str
    make: Maker
    contract: Contract
    exact: bool  # outputs equal the reference bit for bit (else: segments as sets)
    graphable: bool = True


def plugin_impl(dependent_launch: bool = False) -> Impl:
    """The plugin's drop-in, its CUDA kernels launched the ordinary way or,
    with ``dependent_launch``, as programmatic dependents. Making its calls
    (``Impl.make``) sets that for the process, where the build has CUDA
    kernels, so the calls themselves carry no extra work; ``run`` and
    ``benchmarks/chain_cost.py`` make an implementation's calls right before
    they validate and time them."""
    from ._ops import cuda_host, library
    from .api import moe_align_block_size

    def make(ids: torch.Tensor, e: int, b: int) -> Callable[[], tuple[torch.Tensor, ...]]:
        if library.has_backend("cuda"):
            cuda_host.dependent_launch(dependent_launch)
        return lambda: moe_align_block_size(ids, b, e)

    return Impl("plugin, dependent launch" if dependent_launch else "plugin", make, NEWEST, exact=True)


def reference_impl() -> Impl:
    def make(ids: torch.Tensor, e: int, b: int) -> Callable[[], tuple[torch.Tensor, ...]]:
        return lambda: moe_align_block_size_reference(ids, b, e)

    return Impl("torch reference", make, NEWEST, exact=True, graphable=False)


def installed_vllm_op() -> Optional[str]:
    """Makes torch.ops._moe_C.moe_align_block_size available from the
    installed vLLM (importing ``vllm._custom_ops`` loads its extensions);
    returns where from, None without a vLLM that loads."""
    try:
        import vllm._custom_ops  # noqa: F401  (loads vLLM's extensions)
    except Exception:
        return None
    from .vllm.env import running_vllm_version as installed_vllm_version

    return f"vllm {installed_vllm_version()}"


def vllm_impl(load: Callable[[], Optional[str]] = installed_vllm_op) -> Optional[Impl]:
    """vLLM's compiled op, made available by ``load`` (which returns where
    from, None: not found), called as vLLM >= 0.17's Python wrapper calls it:
    three torch.empty, then the op."""
    try:
        source = load()
        op = torch.ops._moe_C.moe_align_block_size
    except Exception:
        return None
    if source is None:
        return None

    def make(ids: torch.Tensor, e: int, b: int) -> Callable[[], tuple[torch.Tensor, ...]]:
        def call() -> tuple[torch.Tensor, ...]:
            size = V0_17.max_num_tokens_padded(ids.numel(), e, b, False)
            sorted_ids = torch.empty((size,), dtype=torch.int32, device=ids.device)
            expert_ids = torch.empty(((size + b - 1) // b,), dtype=torch.int32, device=ids.device)
            post_pad = torch.empty((1,), dtype=torch.int32, device=ids.device)
            op(ids, e, b, sorted_ids, expert_ids, post_pad, None)
            return sorted_ids, expert_ids, post_pad

        return call

    return Impl(f"vLLM op ({source})", make, V0_17, exact=False)


def validate(impl: Impl, got: tuple[torch.Tensor, ...], ids: torch.Tensor, e: int, b: int) -> None:
    """Raises AssertionError unless ``got`` meets the contract. Exact: every
    element equals the reference. Otherwise (implementations whose order inside
    a segment is unspecified): equal num_tokens_post_pad and used expert_ids,
    equal segments as sets, padding value in the rest of the used range."""
    want = moe_align_block_size_reference(ids.cpu(), b, e, contract=impl.contract)
    got = tuple(t.cpu() for t in got[:3])
    if impl.exact:
        for name, g, w in zip(("sorted_token_ids", "expert_ids", "num_tokens_post_pad"), got, want):
            if not torch.equal(g, w):
                raise AssertionError(f"{impl.name}: {name} differs from the reference")
        return
    total = int(want[2])
    if int(got[2]) != total:
        raise AssertionError(f"{impl.name}: num_tokens_post_pad {int(got[2])} != {total}")
    nb = total // b
    if not torch.equal(got[1][:nb], want[1][:nb]):
        raise AssertionError(f"{impl.name}: expert_ids differ in the used blocks")
    owner = torch.repeat_interleave(want[1][:nb].to(torch.int64), b)
    key_g = owner * (ids.numel() + 1) + got[0][:total].to(torch.int64)
    key_w = owner * (ids.numel() + 1) + want[0][:total].to(torch.int64)
    if not torch.equal(torch.sort(key_g).values, torch.sort(key_w).values):
        raise AssertionError(f"{impl.name}: an expert segment holds other routes")


def make_inputs(case: Case, device: str, count: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` different topk_ids of the case's shape (uniform experts)."""
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, case.num_experts, (case.num_tokens, case.top_k), generator=g,
                      dtype=torch.int32).to(device)
        for _ in range(count)
    ]


#: graph timing: calls captured in one CUDA graph, replays per measurement, measurements
CALLS_PER_GRAPH, GRAPH_REPLAYS, GRAPH_REPEATS = 20, 30, 5
#: untimed calls before every eager timing, and the least time they take
#: (one-time costs: lazy kernel loads, allocator growth, clocks ramping up)
WARMUP_CALLS, WARMUP_S = 20, 0.05


def time_graph_us(calls: list[Callable[[], object]], calls_per_graph: int = CALLS_PER_GRAPH,
                  replays: int = GRAPH_REPLAYS, repeats: int = GRAPH_REPEATS) -> float:
    """Device time per call: calls captured in one CUDA graph, replayed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for fn in calls:  # warm-up outside capture (allocator, lazy module load)
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for k in range(calls_per_graph):
            calls[k % len(calls)]()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / (replays * calls_per_graph))
    del graph
    return statistics.median(times)


def warm_up(calls: list[Callable[[], object]], sync: Callable[[], object],
            calls_at_least: int = WARMUP_CALLS, seconds_at_least: float = WARMUP_S) -> int:
    """Untimed calls, rotating over ``calls``: at least ``calls_at_least`` (and
    one per callable), going on until ``seconds_at_least`` have passed.
    Returns how many it made."""
    done, start = 0, time.perf_counter()
    while done < max(calls_at_least, len(calls)) or time.perf_counter() - start < seconds_at_least:
        calls[done % len(calls)]()
        done += 1
        if done % len(calls) == 0:
            sync()
    sync()
    return done


def time_eager_us(calls: list[Callable[[], object]], n: int = 2000, device: str = "cuda",
                  warmup: int = WARMUP_CALLS) -> float:
    """Wall time per call of ``n`` back-to-back calls (then one synchronize),
    after ``warm_up`` (at least ``warmup`` untimed calls)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    warm_up(calls, sync, warmup)
    start = time.perf_counter()
    for k in range(n):
        calls[k % len(calls)]()
    sync()
    return (time.perf_counter() - start) * 1e6 / n


def available_impls(device: str, with_reference: bool = True,
                    others: Optional[Sequence[Optional[Impl]]] = None) -> list[Impl]:
    """The plugin; on CUDA the other compiled ops ``others`` (default: the
    installed vLLM's), those that are not None; then the torch reference."""
    impls = [plugin_impl()]
    if device == "cuda":
        for extra in ([vllm_impl()] if others is None else others):
            if extra is not None:
                impls.append(extra)
    if with_reference:
        impls.append(reference_impl())
    return impls


def eager_calls_for(impl: Impl, eager_calls: int) -> int:
    """How many calls an eager cell of ``impl`` times: ``eager_calls``, or a
    twentieth of it (at least 20) for the slow reference, which is not graphed."""
    return eager_calls if impl.graphable else max(20, eager_calls // 20)


def timing_note(device: str, eager_calls: int, impls: Sequence[Impl],
                warmup: int = WARMUP_CALLS) -> str:
    """What one cell of ``format_table`` measured, with the number of calls
    each implementation's cells time, for the line above the table."""
    counts = ", ".join(f"{i.name} {eager_calls_for(i, eager_calls)}" for i in impls)
    eager = (f"wall time per call of back-to-back calls ({counts} calls), after at least "
             f"{warmup} untimed warm-up calls ({WARMUP_S * 1000:g} ms or more of them)")
    if device != "cuda":
        return f"each cell: {eager}"
    return (f"each cell: graph / eager. graph: device time per call, {CALLS_PER_GRAPH} calls "
            f"captured in one CUDA graph and replayed {GRAPH_REPLAYS} times, median of "
            f"{GRAPH_REPEATS} such runs, after warm-up calls and replays; eager: {eager}")


@dataclass
class Row:
    case: Case
    impl: str
    graph_us: Optional[float]
    eager_us: float


def run(cases: list[Case], device: str, impls: list[Impl], n_inputs: int = 4,
        eager_calls: int = 2000, reference_max_numel: int = REFERENCE_MAX_NUMEL) -> list[Row]:
    """Validates then times every implementation on every case."""
    rows = []
    for case in cases:
        inputs = make_inputs(case, device, n_inputs, seed=case.numel)
        for impl in impls:
            if impl.name == "torch reference" and case.numel > reference_max_numel:
                continue
            calls = [impl.make(ids, case.num_experts, case.block_size) for ids in inputs]
            for ids, fn in zip(inputs, calls):
                validate(impl, fn(), ids, case.num_experts, case.block_size)
            graph = time_graph_us(calls) if device == "cuda" and impl.graphable else None
            eager = time_eager_us(calls, eager_calls_for(impl, eager_calls), device)
            rows.append(Row(case, impl.name, graph, eager))
    return rows


_ALIGN_RULES = {"l": ":--", "r": "--:", "c": ":-:", "-": "---"}


def markdown_table(headers: Sequence[object], rows: Sequence[Sequence[object]],
                   align: Union[str, Sequence[str], None] = None) -> str:
    """A markdown table, one line per row, no trailing newline. Cells are
    ``str(cell)``; ``align`` gives each column's alignment, one letter per
    column (``"lrr"`` or ``["l", "r", "r"]``: l, r, c, or ``-`` for none);
    without it every column is unaligned (``|---|``)."""
    n = len(headers)
    rules = ["---"] * n if align is None else [_ALIGN_RULES[a] for a in align]
    if len(rules) != n:
        raise ValueError(f"align has {len(rules)} columns, headers {n}")
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join(rules) + "|"]
    for row in rows:
        if len(row) != n:
            raise ValueError(f"a row has {len(row)} cells, headers {n}: {describe(row)}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def format_table(rows: list[Row], device: str,
                 reference_max_numel: int = REFERENCE_MAX_NUMEL) -> str:
    """Markdown: one row per case, one column per implementation, the unit in
    each column's header; a note under the table says what a "-" means."""
    impls = list(dict.fromkeys(r.impl for r in rows))
    cases = list(dict.fromkeys(r.case for r in rows))
    by_key = {(r.case, r.impl): r for r in rows}
    graphed = {r.impl for r in rows if r.graph_us is not None}
    headers = ["tokens x topk, E, B"] + [
        f"{name}, graph / eager us" if name in graphed
        else f"{name}, {'eager ' if device == 'cuda' else ''}us per call" for name in impls
    ]
    body = []
    for case in cases:
        cells = [case.label]
        for name in impls:
            r = by_key.get((case, name))
            if r is None:
                cells.append("-")
            elif r.graph_us is not None:
                cells.append(f"{r.graph_us:.2f} / {r.eager_us:.1f}")
            else:
                cells.append(f"{r.eager_us:.1f}")
        body.append(cells)
    table = markdown_table(headers, body)
    if any(cell == "-" for row in body for cell in row):
        table += (f"\n\n-: not timed; the torch reference runs only up to {reference_max_numel} "
                  "routes (it is an exactness oracle, far slower than the kernels).")
    return table
