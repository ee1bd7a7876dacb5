"""fused_globalize_align_block_size: the plugin against vLLM 0.33's compiled op.

vLLM's op (``torch.ops._moe_C.fused_globalize_align_block_size``) comes from
the ``_moe_C`` library of a vLLM >= 0.33 wheel (``VLLM_MOE_ALIGN_VLLM_OP_SO``,
else the installed vLLM's; ``benchmarks.loaders``). Each implementation is
called as its Python caller calls it: the plugin's function, and vLLM's op
behind the ``torch.empty`` buffers its wrapper allocates.

Before timing, both are checked against the oracle
(``globalize_reference``): the plugin bit for bit, vLLM's op with each
expert's segment of ``sorted_ids`` compared as a set (its order there comes
from atomics). Both rewrite the ids in place, so every timed call first
copies the pristine ids back; the table gives the time of (copy + call)
minus the time of the copy alone, both captured in CUDA graphs
(``vllm_moe_align_plugin.bench.time_graph_us``), median of two rounds.

Cases: vLLM's test grid (a subset: 4 row counts x top-k 8, 28 or 32 local
experts, blocks of 16 and 64) and DeepEP-v2 decode on the DeepSeek-V3
(256 experts) and Qwen3-30B-A3B (128 experts) shapes with expert parallel
8 and 16: rows received = tokens per rank x ranks, three quarters real.

    python -m benchmarks.benchmark_globalize [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

from benchmarks import loaders
from vllm_moe_align_plugin import bench
from vllm_moe_align_plugin.globalize import buffer_sizes, fused_globalize_align_block_size
from vllm_moe_align_plugin.globalize_reference import (
    fused_globalize_align_block_size_reference as reference,
)

Outputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    topk: int
    global_experts: int
    ep: int  # ranks; this one is rank 1
    block_size: int

    @property
    def local_experts(self) -> int:
        return self.global_experts // self.ep


def cases() -> list[Case]:
    grid = [Case(f"vLLM grid n={n}", n, 8, 4 * local, 4, b)
            for n in (1, 7, 64, 257) for local in (28, 32) for b in (16, 64)]
    decode = [Case(f"{model} EP{ep}, {tokens} tok/rank", tokens * ep, 8, experts, ep, 16)
              for model, experts in (("DeepSeek-V3", 256), ("Qwen3-30B-A3B", 128))
              for ep in (8, 16) for tokens in (1, 8, 64, 128)]
    return grid + decode


def inputs(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    """Local ids in [-1, L) (-1: another rank's expert), the psum of rows
    received per rank with three quarters of the rows real, and the ints."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(-1, case.local_experts, (case.rows, case.topk), generator=gen)
    psum = torch.tensor([case.rows // 2, case.rows - case.rows // 4], dtype=torch.int32)
    ints = (case.local_experts, case.global_experts, case.local_experts, case.block_size)
    return ids, psum, ints


def vllm_op_available() -> bool:
    try:
        if loaders.load_vllm_op() is None:
            return False
        torch.ops._moe_C.fused_globalize_align_block_size  # noqa: B018
        return True
    except (AttributeError, RuntimeError, OSError):
        return False


def vllm_globalize(ids: torch.Tensor, psum: torch.Tensor, reo: int, gne: int, lne: int, block: int,
                   return_scatter_idx: bool = False) -> Outputs:
    """vLLM's op as vLLM 0.33's Python wrapper calls it (the same buffers)."""
    size, blocks = buffer_sizes(ids.numel(), lne, block) or (0, 0)
    sorted_ids = torch.empty((size,), dtype=torch.int32, device=ids.device)
    expert_ids = torch.empty((blocks,), dtype=torch.int32, device=ids.device)
    post_pad = torch.empty((1,), dtype=torch.int32, device=ids.device)
    scatter = (torch.empty((ids.numel(), 1), dtype=torch.int32, device=ids.device)
               if return_scatter_idx else None)
    torch.ops._moe_C.fused_globalize_align_block_size(ids, psum, reo, gne, lne, block, sorted_ids,
                                                      expert_ids, post_pad, scatter)
    out = (ids, sorted_ids, expert_ids, post_pad)
    return (*out, scatter) if scatter is not None else out


def segments_as_sets(sorted_ids: torch.Tensor, expert_ids: torch.Tensor, post_pad: int,
                     block: int) -> torch.Tensor:
    """``sorted_ids`` with each expert's segment sorted (a segment: the run of
    consecutive used blocks with one expert id), so orders inside segments
    compare equal."""
    out = sorted_ids.clone()
    owners = expert_ids[: post_pad // block].tolist()
    start = 0
    for b in range(1, len(owners) + 1):
        if b == len(owners) or owners[b] != owners[start]:
            lo, hi = start * block, b * block
            out[lo:hi] = torch.sort(out[lo:hi]).values
            start = b
    return out


def mismatch(got: Outputs, want: Outputs, block: int, exact: bool) -> Optional[str]:
    """None when ``got`` (on any device) equals the oracle's ``want``;
    ``exact=False`` compares sorted_ids' segments as sets."""
    got = tuple(t.cpu() for t in got)
    names = ("recv_topk_idx", "sorted_ids", "expert_ids", "num_tokens_post_pad", "scatter_idx")
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for name, g, w in zip(names, got, want):
        if (g.dtype, g.shape) != (w.dtype, w.shape):
            return f"{name}: {g.dtype} {tuple(g.shape)}, expected {w.dtype} {tuple(w.shape)}"
        if name == "sorted_ids" and not exact:
            total = int(want[3].item())
            g = segments_as_sets(g, want[2], total, block)
            w = segments_as_sets(w, want[2], total, block)
        if not torch.equal(g, w):
            bad = (g.flatten() != w.flatten()).nonzero().flatten()[:5].tolist()
            return f"{name} differs at {bad}"
    return None


def check(case: Case, impl: Callable[..., Outputs], exact: bool, seed: int) -> None:
    ids, psum, ints = inputs(case, seed)
    want = reference(ids.clone(), psum, *ints, return_scatter_idx=True)
    got = impl(ids.cuda(), psum.cuda(), *ints, return_scatter_idx=True)
    problem = mismatch(got, want, case.block_size, exact)
    if problem is not None:
        raise AssertionError(f"{case.name} (seed {seed}): {problem}")


def time_us(case: Case, impl: Callable[..., Outputs]) -> float:
    """Graph time of one call: (restore the ids + call) minus (restore)."""
    ids, psum, ints = inputs(case)
    pristine, work, psum = ids.cuda(), ids.cuda(), psum.cuda()

    def restore() -> None:
        work.copy_(pristine)

    def call() -> None:
        work.copy_(pristine)
        impl(work, psum, *ints)

    return bench.time_graph_us([call]) - bench.time_graph_us([restore])


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--seeds", type=int, default=3, help="inputs checked per case and implementation")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time")
        return 1
    impls: dict[str, tuple[Callable[..., Outputs], bool]] = {
        "plugin": (fused_globalize_align_block_size, True)}
    if vllm_op_available():
        impls["vLLM op"] = (vllm_globalize, False)
    else:
        print("vLLM's fused_globalize_align_block_size op not found: the plugin alone")
    rows = []
    for case in cases():
        for impl, exact in impls.values():
            for seed in range(args.seeds):
                check(case, impl, exact, seed)
        times = {name: sorted(time_us(case, impl) for _ in range(2))
                 for name, (impl, _) in impls.items()}
        rows.append({"case": case.name, "rows": case.rows, "topk": case.topk,
                     "local_experts": case.local_experts, "block_size": case.block_size,
                     **{f"{name} us": sum(t) / 2 for name, t in times.items()},
                     **{f"{name} us (rounds)": t for name, t in times.items()}})
    print(f"fused_globalize_align_block_size, {torch.cuda.get_device_name()}; all outputs checked "
          f"against the oracle ({args.seeds} inputs per case); graph us per call, mean of 2 rounds")
    headers = ["case", "rows x topk", "L", "B"] + [f"{n} us" for n in impls]
    if len(impls) == 2:
        headers.append("vLLM / plugin")
    table = []
    for r in rows:
        line = [r["case"], f"{r['rows']}x{r['topk']}", r["local_experts"], r["block_size"]]
        line += [f"{r[f'{n} us']:.2f} ({r[f'{n} us (rounds)'][0]:.2f}-{r[f'{n} us (rounds)'][1]:.2f})"
                 for n in impls]
        if len(impls) == 2:
            line.append(f"{r['vLLM op us'] / r['plugin us']:.2f}x")
        table.append(line)
    print(bench.markdown_table(headers, table))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
