"""Benchmark: the plugin against vLLM's and SGLang's compiled kernels and the
pure-torch reference, on the anchors' grid (shared with `vllm-moe-align bench`).

Every implementation's outputs are validated against the contract before it is
timed; inputs rotate over 4 tensors. Writes a markdown table, a CSV and a PNG
plot to --out (default benchmarks/results/).

Reference kernels (no vLLM needed): set VLLM_MOE_ALIGN_VLLM_OP_SO to vLLM's
_moe_C .so and/or VLLM_MOE_ALIGN_SGLANG_SO to sgl_kernel's common_ops .so
(benchmarks/fetch_reference_kernels.sh fetches both; benchmarks/loaders.py loads them).

    python -m benchmarks.benchmark_moe_align_block_size [--quick] [--first-call]
    python -m benchmarks.benchmark_moe_align_block_size --variants   # options, limits
    python -m benchmarks.benchmark_moe_align_block_size --decode-ids # decode, per row of ids

(from the repository root, with the plugin installed or built in place).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks import loaders
from vllm_moe_align_plugin import bench
from vllm_moe_align_plugin.reference import (
    moe_align_block_size_reference,
    random_expert_map,
    route_bins,
)

FIRST_CALL_SNIPPET = """
import time, torch
ids = torch.randint(0, 64, (4096 * 2,), dtype=torch.int32, device="cuda")
torch.cuda.synchronize()
{setup}
t0 = time.time()
out = {call}
torch.cuda.synchronize()
print("FIRST-CALL-US", (time.time() - t0) * 1e6)
"""

FIRST_CALL_IMPLS = {
    "plugin": ("from vllm_moe_align_plugin import moe_align_block_size",
               "moe_align_block_size(ids, 128, 64)"),
}


def first_call_us(name: str, runs: int = 3) -> list[float]:
    """First call at the seed's shape in fresh processes, timed as the seed
    script does (time.time() around one call, right after the input exists;
    the import happens before)."""
    setup, call = FIRST_CALL_IMPLS[name]
    out = []
    for _ in range(runs):
        code = FIRST_CALL_SNIPPET.format(setup=setup, call=call)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent, timeout=300)
        line = [x for x in proc.stdout.splitlines() if x.startswith("FIRST-CALL-US")]
        if not line:
            raise RuntimeError(proc.stderr[-2000:])
        out.append(float(line[0].split()[1]))
    return out


# The plugin's options and limits, timed against its plain call (the target: an
# expert_map either way or scatter_idx costs at most 10% more).
VARIANT_CASES = [bench.Case(1, 8, 256, 16), bench.Case(256, 8, 256, 16),
                 bench.Case(4096, 2, 64, 128), bench.Case(16384, 8, 256, 128),
                 bench.Case(65536, 8, 256, 128)]
LIMIT_CASES = [bench.Case(1, 8, 4096, 16), bench.Case(256, 8, 4096, 16),
               bench.Case(16384, 8, 4096, 128), bench.Case(1 << 21, 8, 256, 128)]
VARIANTS = {  # name: (expert_map, ignore_invalid_experts, return_scatter_idx)
    "plain": (False, False, False),
    "map (output)": (True, False, False),
    "map (counting)": (True, True, False),
    "scatter_idx": (False, False, True),
    "map + scatter_idx": (True, True, True),
}
# The plain call on ids already mapped: each route's local id, E where the map
# drops it. Its outputs are those of "map (counting)" bit for bit, so the two
# differ only by the lookup; against "plain" the map also changes the layout
# (about half the routes dropped, fewer used blocks).
SAME_OUTPUT = "plain, ids pre-mapped"


def premapped_ids(ids: torch.Tensor, emap: torch.Tensor, num_experts: int) -> torch.Tensor:
    """``ids`` with the expert map applied while counting: the local id where
    the id is in range and the map keeps it, else ``num_experts``."""
    bins = route_bins(ids.reshape(-1).to(torch.int64), num_experts, emap)
    return bins.view(ids.shape).to(ids.dtype)


def variants_table() -> str:
    """Graph us of the plugin per option, validated bit for bit first. The
    expert map: about half the experts local (``random_expert_map``). The
    last time column is SAME_OUTPUT, and "map cost" is map (counting) over
    it: what the lookup itself adds."""
    from vllm_moe_align_plugin import moe_align_block_size

    body = []
    for case in VARIANT_CASES + LIMIT_CASES:
        e, b = case.num_experts, case.block_size
        emap_cpu = random_expert_map(e, generator=torch.Generator().manual_seed(case.numel))
        emap = emap_cpu.cuda()
        inputs = bench.make_inputs(case, "cuda", 4 if case in VARIANT_CASES else 2)
        runs = [(VARIANTS[name], inputs) for name in
                (VARIANTS if case in VARIANT_CASES else ["plain"])]
        if case in VARIANT_CASES:
            runs.append((VARIANTS["plain"], [premapped_ids(x, emap, e) for x in inputs]))
        times = []
        for j, ((use_map, ignore, scatter), xs) in enumerate(runs):
            m = emap if use_map else None

            def call(ids: torch.Tensor, m: object = m, ignore: bool = ignore, scatter: bool = scatter,
                     b: int = b, e: int = e) -> tuple[torch.Tensor, ...]:
                return moe_align_block_size(ids, b, e, m, False, ignore, return_scatter_idx=scatter)

            # the pre-mapped run must give the map-while-counting call's outputs
            mapped = j == len(VARIANTS)
            want = moe_align_block_size_reference(inputs[0].cpu(), b, e,
                                                  emap_cpu if use_map or mapped else None, False,
                                                  ignore or mapped, return_scatter_idx=scatter)
            got = call(xs[0])
            if not all(torch.equal(x.cpu(), y) for x, y in zip(got, want)):
                raise AssertionError(f"plugin differs from the reference: {case.label}, "
                                     f"map={use_map} ignore={ignore} scatter={scatter} "
                                     f"pre-mapped={mapped}")
            times.append(bench.time_graph_us([lambda x=x: call(x) for x in xs]))
        width = len(VARIANTS) + 1
        cells = [f"{t:.2f}" for t in times] + ["-"] * (width - len(times))
        ratio = f"{max(times[:len(VARIANTS)]) / times[0]:.2f}" if len(times) > 1 else "-"
        counting = list(VARIANTS).index("map (counting)")
        cost = f"{times[counting] / times[-1]:.2f}" if len(times) == width else "-"
        body.append([case.label, *cells, ratio, cost])
    return bench.markdown_table(["tokens x topk, E, B", *VARIANTS, SAME_OUTPUT, "worst / plain",
                                 "map cost"], body)


# The decode call (1x8, E=256, B=16) on fixed rows of ids: what the routes'
# experts (distinct, repeated, out of range) do to its time. Ids >= E are
# dropped by the contract; the "7 + 1 repeated" row keeps every route with the
# same 7 used blocks as "7 + 1 out of range", to tell dropping from the block
# count. vLLM's op runs only on rows without an out-of-range id.
DECODE_IDS_CASE = bench.Case(1, 8, 256, 16)
DECODE_IDS = {
    "8 distinct": [3, 40, 77, 101, 150, 190, 222, 250],
    "7 distinct + 1 repeated": [3, 3, 40, 77, 101, 150, 190, 222],
    "7 distinct + 1 out of range": [3, 40, 77, 101, 150, 190, 222, 300],
    "4 experts x 2 routes": [3, 3, 40, 40, 77, 77, 101, 101],
    "4 distinct + 4 out of range": [3, 40, 77, 101, 300, 300, 300, 300],
    "1 expert x 8 routes": [3] * 8,
    "all 8 out of range": [300] * 8,
}


def decode_ids_table(vllm: bench.Impl | None) -> str:
    """Graph us of the decode call per row of ids: the plugin launched the
    ordinary way and as a programmatic dependent, and vLLM's op where the row
    is in range; every output validated first (the plugin bit for bit). The
    rows run twice, in the listed order and reversed, and each cell shows
    both passes, so a cost that follows a row's place in the run (rather than
    its ids) shows as two different numbers."""
    case = DECODE_IDS_CASE
    e, b = case.num_experts, case.block_size
    impls = [bench.plugin_impl(), bench.plugin_impl(dependent_launch=True)]
    if vllm is not None:
        impls.append(vllm)
    rows = list(DECODE_IDS.items())
    times: dict[tuple[str, str], list[float]] = {}
    for order in (rows, rows[::-1]):
        for name, row in order:
            ids = torch.tensor([row], dtype=torch.int32, device="cuda")
            for impl in impls:
                if impl is vllm and not all(0 <= x < e for x in row):
                    continue
                call = impl.make(ids, e, b)
                bench.validate(impl, call(), ids, e, b)
                times.setdefault((name, impl.name), []).append(bench.time_graph_us([call]))
    bench.plugin_impl().make(ids, e, b)  # leave the ordinary launch on
    body = []
    for name, row in rows:
        used = int(moe_align_block_size_reference(torch.tensor([row], dtype=torch.int32), b, e)[2])
        cells: list[object] = [name, used // b]
        for impl in impls:
            t = times.get((name, impl.name))
            cells.append(" / ".join(f"{x:.2f}" for x in t) if t else "-")
        body.append(cells)
    return bench.markdown_table([f"ids ({case.label})", "used blocks",
                                 *(f"{i.name} (listed / reversed order)" for i in impls)], body)


def write_csv(rows: list[bench.Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["num_tokens", "top_k", "num_experts", "block_size", "routes", "impl",
                    "graph_us", "eager_us"])
        for r in rows:
            c = r.case
            w.writerow([c.num_tokens, c.top_k, c.num_experts, c.block_size, c.numel, r.impl,
                        "" if r.graph_us is None else f"{r.graph_us:.3f}", f"{r.eager_us:.2f}"])


def plot(rows: list[bench.Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for impl in dict.fromkeys(r.impl for r in rows):
        pts = sorted((r.case.numel, r.graph_us) for r in rows
                     if r.impl == impl and r.graph_us is not None)
        if not pts:
            continue
        # several cases share a route count: plot each
        ax.plot([max(p[0], 1) for p in pts], [p[1] for p in pts], marker="o", label=impl)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("routes (num_tokens x top_k)")
    ax.set_ylabel("device time per call, us (CUDA graph)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--serving", action="store_true",
                    help="also the serving models' shapes (bench.SERVING_CASES): DeepSeek-V2-Lite and "
                         "Qwen3-30B-A3B at decode and an 8192-token prefill")
    ap.add_argument("--first-call", action="store_true", help="also time first calls")
    ap.add_argument("--no-reference", action="store_true", help="skip the pure-torch reference")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    ap.add_argument("--dependent-launch", action="store_true",
                    help="also the plugin with programmatic dependent launch on, in the same run")
    ap.add_argument("--variants", action="store_true",
                    help="time the plugin's options (expert_map, scatter_idx) and limits instead")
    ap.add_argument("--decode-ids", action="store_true",
                    help="time the decode call on fixed rows of ids (distinct, repeated and "
                         "out-of-range experts) instead")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.decode_ids or args.variants:
        option = "--decode-ids" if args.decode_ids else "--variants"
        if device != "cuda":
            raise SystemExit(f"{option} needs a CUDA device")
        if args.decode_ids:
            table = decode_ids_table(loaders.vllm_impl())
            name, what = "moe_align_decode_ids.md", "decode call per row of ids"
        else:
            table = variants_table()
            name, what = "moe_align_variants.md", "plugin options"
        args.out.mkdir(parents=True, exist_ok=True)
        title = f"{what}, graph us, {torch.cuda.get_device_name()}, torch {torch.__version__}"
        (args.out / name).write_text(f"{title}\n\n{table}\n")
        print(title)
        print(table)
        return 0
    cases = bench.QUICK_CASES if args.quick else bench.CASES
    if args.serving:
        cases = cases + [c for c in bench.SERVING_CASES if c not in cases]
    impls = loaders.available_impls(device, with_reference=not args.no_reference)
    if args.dependent_launch and device == "cuda":
        impls.insert(1, bench.plugin_impl(dependent_launch=True))
    t0 = time.time()
    rows = bench.run(cases, device, impls, eager_calls=2000 if device == "cuda" else 50)
    gpu = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    title = f"moe_align_block_size, {gpu}, torch {torch.__version__}"
    table = bench.format_table(rows, device)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "moe_align" + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.md").write_text(f"{title}\n\n{table}\n")
    write_csv(rows, args.out / f"{stem}.csv")
    try:
        plot(rows, args.out / f"{stem}.png", title)
    except ImportError:
        print("matplotlib missing: no plot")
    print(title)
    print(f"implementations: {', '.join(i.name for i in impls)}; all validated; "
          f"{time.time() - t0:.0f} s")
    if args.first_call and device == "cuda":
        print("first call at 4096x2, E=64, B=128 (us, fresh processes): plugin",
              " / ".join(f"{x:.0f}" for x in first_call_us("plugin")))
    print(table)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
