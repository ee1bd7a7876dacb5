"""On a GPU: does a build of the plugin that cannot run there hand CUDA calls to
vLLM's own function, with vLLM's results, and does the per-device check cost
the normal path anything?

    python -m benchmarks.fallback_check check --out DIR   # routing + results
    python -m benchmarks.fallback_check time --out DIR    # eager and graph timings

vLLM's function is stood in for by vLLM's compiled op (``torch.ops._moe_C``,
loaded from ``VLLM_MOE_ALIGN_VLLM_OP_SO`` or an installed vLLM), called the way
vLLM 0.17-0.30's Python wrapper calls it. Run it once per build (a CPU-only
build, a build without code for the GPU's architecture, the normal build):
``check`` writes ``fallback_<label>.json``; ``time`` appends one JSON line per
shape to ``timing.jsonl``. ``time`` also runs against a build from before the
per-device check (it imports nothing newer), for the A/B of the normal path.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Optional

import torch

from benchmarks import loaders
from vllm_moe_align_plugin import _ops, api, bench
from vllm_moe_align_plugin.contract import V0_17

SHAPES = [(1, 8, 256, 16), (64, 8, 256, 16), (256, 8, 256, 16), (4096, 2, 64, 128),
          (16384, 8, 256, 128), (65536, 8, 256, 128)]


def vllm_function(vllm_op: Any) -> Any:
    """vLLM 0.17-0.30's Python-level function around its compiled op."""

    def moe_align_block_size(topk_ids: torch.Tensor, block_size: int, num_experts: int,
                             expert_map: Optional[torch.Tensor] = None,
                             pad_sorted_ids: bool = False,
                             ignore_invalid_experts: bool = False) -> tuple[torch.Tensor, ...]:
        size = V0_17.max_num_tokens_padded(topk_ids.numel(), num_experts, block_size,
                                           pad_sorted_ids)
        new = {"dtype": torch.int32, "device": topk_ids.device}
        sorted_ids = torch.empty((size,), **new)
        expert_ids = torch.empty(((size + block_size - 1) // block_size,), **new)
        post_pad = torch.empty((1,), **new)
        vllm_op(topk_ids, num_experts, block_size, sorted_ids, expert_ids, post_pad,
                expert_map if ignore_invalid_experts else None)
        if expert_map is not None and not ignore_invalid_experts:
            expert_ids = expert_map[expert_ids]
        return sorted_ids, expert_ids, post_pad

    return moe_align_block_size


def _vllm_op() -> Any:
    impl = loaders.vllm_impl()  # loads the library
    if impl is None:
        raise SystemExit("vLLM's compiled op is not available: set VLLM_MOE_ALIGN_VLLM_OP_SO")
    return torch.ops._moe_C.moe_align_block_size


def check(label: str, out: Path) -> dict:
    from vllm_moe_align_plugin import devices

    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    logging.getLogger("vllm.moe_align_plugin").addHandler(Keep(logging.WARNING))
    vllm_fn = vllm_function(_vllm_op())
    calls = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return vllm_fn(*args, **kwargs)

    drop_in = api.drop_in_for(V0_17, fallback=counted)
    checked = []
    for tokens, top_k, experts, block in SHAPES:
        case = bench.Case(tokens, top_k, experts, block)
        ids = bench.make_inputs(case, "cuda", 1, seed=tokens)[0]
        got = drop_in(ids, block, experts)
        torch.cuda.synchronize()
        plugin_ran = calls == 0
        impl = bench.Impl("drop-in", lambda *a: None, V0_17, exact=plugin_ran)
        bench.validate(impl, got, ids, experts, block)
        want = vllm_fn(ids, block, experts)
        assert int(got[2]) == int(want[2])
        checked.append({"shape": [tokens, top_k, experts, block], "fallback_calls": calls})
    ok, why = devices.decision(ids.device)
    report = {
        "label": label,
        "gpu": torch.cuda.get_device_name(),
        "backends": [b for b in ("cpu", "cuda") if _ops.has_backend(b)],
        "cuda_archs": _ops.cuda_archs(),
        "plugin_runs_on_cuda": ok,
        "reason": why,
        "fallback_calls": calls,
        "shapes_checked": checked,
        "results": "valid (vLLM's contract; order inside segments as vLLM's op gives it)"
        if calls else "equal to the reference bit for bit",
        "warnings": warnings,
    }
    (out / f"fallback_{label}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return report


def time_shapes(label: str, out: Path) -> None:
    vllm_fn = vllm_function(_vllm_op())
    try:
        drop_in = api.drop_in_for(V0_17, fallback=vllm_fn)
    except TypeError:  # a build from before the per-device check
        drop_in = api.drop_in_for(V0_17)
    with (out / "timing.jsonl").open("a") as f:
        for tokens, top_k, experts, block in SHAPES:
            case = bench.Case(tokens, top_k, experts, block)
            inputs = bench.make_inputs(case, "cuda", 4, seed=tokens)
            row: dict[str, Any] = {"label": label, "shape": [tokens, top_k, experts, block]}
            for name, fn in (("plugin", drop_in), ("vllm", vllm_fn)):
                calls = [lambda ids=ids, fn=fn, b=block, e=experts: fn(ids, b, e) for ids in inputs]
                row[f"{name}_graph_us"] = bench.time_graph_us(calls)
                row[f"{name}_eager_us"] = bench.time_eager_us(calls, 2000)
            f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["check", "time"])
    parser.add_argument("--label", required=True, help="names the build in the output")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (check if args.action == "check" else time_shapes)(args.label, args.out)


if __name__ == "__main__":
    main()
