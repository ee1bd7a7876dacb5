"""Launches and bytes per call of the CUDA backend, against measured time.

For every shape of the benchmark's grid this asks the compiled library which
launch plan the CUDA backend uses on an H100 (``_ops.cuda_launch_plan``: host
code, so it runs on a machine without a GPU), derives from that plan the two
numbers that bound a call from below - kernel launches and bytes moved - and
sets the floor they give next to the graph time measured on the H100
(``results/moe_align_vllm.csv``, written by benchmark_moe_align_block_size.py).

The model (int32 ids, no expert_map, no scatter_idx):

- compulsory bytes: the ids read once, every output element written once;
- L2 bytes: what the plan reads and writes besides, all of it L2-resident at
  these sizes: the spread regime's CTAs each read all the ids; the tiled
  regimes read the ids twice, write the route slots twice and pass per-tile
  counts through scratch (with the prefix in each CTA, every CTA reads every
  tile's counts);
- shared atomics per CTA: the count's cost inside one SM;
- floor: launches x LAUNCH_US + compulsory bytes at HBM3 peak. Everything
  above the floor is latency: dependent memory round trips and barriers.

Usage: python -m benchmarks.launch_model [--csv benchmarks/results/moe_align_vllm.csv]
       [--out benchmarks/results/launch_model.md]
"""

from __future__ import annotations

import argparse
import csv
import os
from dataclasses import dataclass
from typing import Optional

from vllm_moe_align_plugin import _ops
from vllm_moe_align_plugin.bench import CASES, Case, markdown_table
from vllm_moe_align_plugin.contract import NEWEST

# One kernel launch inside a CUDA graph on the H100 (an empty kernel, measured
# the same way as the benchmark).
LAUNCH_US = 0.90
# H100 SXM HBM3 peak bandwidth, bytes per microsecond.
HBM_BYTES_PER_US = 3.35e6
# The kernel's targets (us per call, graph time), for the shapes that have one.
TARGETS_US = {
    (1, 8, 256, 16): 2.0, (256, 8, 256, 16): 2.5, (256, 10, 512, 16): 2.5,
    (4096, 2, 64, 128): 2.5, (4096, 8, 128, 64): 4.0, (4096, 10, 512, 64): 5.0,
    (16384, 8, 256, 128): 6.0, (65536, 8, 256, 128): 12.0,
}
HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class ModelRow:
    case: Case
    plan: _ops.CudaLaunchPlan
    compulsory_bytes: int
    l2_bytes: int
    atomics_per_cta: int
    floor_us: float


def model(case: Case) -> ModelRow:
    n, e, b = case.numel, case.num_experts, case.block_size
    size = NEWEST.max_num_tokens_padded(n, e, b, False)
    blocks = (size + b - 1) // b
    plan = _ops.cuda_launch_plan(n, e, b, size)
    ids = 4 * n
    compulsory = ids + 4 * (size + blocks + 1)
    counts = 4 * plan.ctas * e  # one row of per-expert counts per tile
    if plan.regime == "tiny":
        l2 = plan.ctas * (plan.threads // 32) * ids  # every warp loads every route
        atomics = 0
    elif plan.regime == "spread":
        l2 = plan.ctas * ids  # every CTA counts every route
        atomics = n + n // 2  # all routes, and on average half again before the tile
    else:
        # ids read twice; the route slots written twice (the count kernel pads
        # all of sorted_ids, the scatter overwrites the route slots)
        l2 = 2 * ids + ids + counts
        if plan.regime == "tiled, prefix in each CTA":
            l2 += plan.ctas * counts  # every CTA reads every tile's counts
        else:  # the scan kernel reads the counts twice and rewrites them; each
            # scatter CTA reads its row and the totals
            l2 += 3 * counts + counts + plan.ctas * 4 * e
        atomics = 2 * plan.tile_routes  # count kernel, then the scatter's warp rows
    floor = plan.launches * LAUNCH_US + compulsory / HBM_BYTES_PER_US
    return ModelRow(case, plan, compulsory, l2, atomics, floor)


def measured(csv_path: str) -> dict[tuple[int, int, int, int], dict[str, float]]:
    """graph us per (tokens, top_k, E, B) and implementation."""
    out: dict[tuple[int, int, int, int], dict[str, float]] = {}
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            key = (int(r["num_tokens"]), int(r["top_k"]), int(r["num_experts"]),
                   int(r["block_size"]))
            if r["graph_us"]:
                out.setdefault(key, {})[r["impl"]] = float(r["graph_us"])
    return out


def _kb(x: int) -> str:
    return f"{x / 1024:.0f}" if x >= 10 * 1024 else f"{x / 1024:.1f}"


HEADERS = ("tokens x topk, E, B", "regime", "launches", "CTAs x threads", "compulsory KiB", "L2 KiB",
           "shared atomics / CTA", "floor us", "plugin us", "above floor", "target us")


def table(rows: list[ModelRow], times: dict[tuple[int, int, int, int], dict[str, float]]) -> str:
    body = []
    for m in rows:
        c = m.case
        key = (c.num_tokens, c.top_k, c.num_experts, c.block_size)
        got: Optional[float] = times.get(key, {}).get("plugin")
        target = TARGETS_US.get(key)
        body.append([
            c.label, m.plan.regime, m.plan.launches, f"{m.plan.ctas} x {m.plan.threads}",
            _kb(m.compulsory_bytes), _kb(m.l2_bytes), m.atomics_per_cta, f"{m.floor_us:.2f}",
            "-" if got is None else f"{got:.2f}",
            "-" if got is None else f"{got - m.floor_us:.2f}",
            "-" if target is None else f"{target:.1f}",
        ])
    return markdown_table(HEADERS, body) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", default=os.path.join(HERE, "results", "moe_align_vllm.csv"),
                    help="graph times measured on the H100 (the benchmark's CSV)")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    times = measured(args.csv) if os.path.exists(args.csv) else {}
    text = (
        f"CUDA launch plan per call on an H100 ({_ops.H100_SMS} SMs), bytes per call, and the "
        f"floor (launches x {LAUNCH_US} us + compulsory bytes at "
        f"{HBM_BYTES_PER_US / 1e6:.2f} TB/s) against the measured graph time "
        f"({os.path.relpath(args.csv, HERE) if times else 'no measurements found'}).\n\n"
        + table([model(c) for c in CASES], times)
    )
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
