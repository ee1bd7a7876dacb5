"""End to end: vLLM offline inference with and without the plugin.

For each model (``models``: a small Qwen3-MoE-style and a small Mixtral-style
model, dummy weights, nothing downloaded) vLLM runs the same batch twice, each
in its own process tree (``environment``): variant ``vllm`` (no general plugin
loaded: vLLM's own ``moe_align_block_size``) and variant ``plugin`` (this
plugin only).

Each run (``child``): ``vllm.LLM(...)`` (V1 engine, engine core in its own
process, workers in their own processes for ``--tp`` > 1, Triton attention,
Triton fused MoE, bf16, greedy), one warm-up ``generate``, then ``--repeats``
timed pairs of ``generate`` calls (``max_tokens=1``, then
``max_tokens=--max-tokens``), then one ``generate`` under vLLM's torch
profiler (traces of every worker).

Reported per model and run: prefill time of the batch and decode time per step
(from vLLM's per-request metrics and from wall-clock differences), GPU time of
the align calls per prefill and per decode step (``trace``, ``attribution``:
the plugin's kernels; vLLM's op kernels with the fills and the expert-map
gather its function launches), and their share of the step's GPU time.
Checked (exit status 1 if not):

- the generated token ids are identical between the two runs (greedy);
- in the ``plugin`` run every vLLM process (driver, engine core, each worker)
  logged the plugin's "... on for vLLM ..." line once; in the
  ``vllm`` run none did (``logs``);
- with profiling on, the ``plugin`` run's traces hold the plugin's kernels and
  none of vLLM's align kernels, and the ``vllm`` run's the reverse.

Outputs in ``--out`` (default benchmarks/results/): ``e2e_offline.md``,
``e2e_offline.csv``, ``e2e_offline.png``, and ``e2e_offline_logs/`` (each run's
log, result JSON and trace summary). Needs vLLM 0.26 (checked against 0.26.0's
API) and GPUs. From the repository root:

    python -m benchmarks.vllm_ab.offline [--model qwen3moe|mixtral|both] [--tp N] [--ep]
                                         [--enforce-eager | --no-enforce-eager] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from benchmarks.vllm_ab import environment, logs, trace
from benchmarks.vllm_ab.models import MODELS, write_model
from benchmarks.vllm_ab.report import fmt, write_csv

from . import report
from .child import RunSpec

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
STEM = "e2e_offline"


def run_variant(spec: RunSpec, log_path: Path, timeout: float) -> tuple[Optional[dict[str, Any]], str]:
    """Runs ``spec`` in a child process (``python -m benchmarks.vllm_ab.offline --child``)
    in a process group of its own, output to ``log_path``; after ``timeout``
    seconds, or once the child has exited, the whole group is killed. A child
    that wrote its result and then hung on shutdown still counts.
    Returns (result or None, the log text)."""
    spec_path = log_path.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(asdict(spec)))
    result_path = Path(spec.result_path)
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.vllm_ab.offline", "--child", str(spec_path)]
    print(f"  [{spec.model} / {spec.variant}] {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    env = environment.child_env(dict(os.environ), spec.variant)
    code = environment.run_in_group(cmd, env, log_path, ROOT, timeout)
    text = log_path.read_text(errors="replace")
    took = time.perf_counter() - t0
    if code != 0 and not (code is None and result_path.exists()):
        print(f"  [{spec.model} / {spec.variant}] FAILED (exit {code}, {took:.0f} s); log tail:\n"
              + "\n".join(text.splitlines()[-40:]), flush=True)
        return None, text
    result = json.loads(result_path.read_text())
    note = "" if code == 0 else " (killed after its result: it did not exit)"
    print(f"  [{spec.model} / {spec.variant}] done in {took:.0f} s (LLM init {result['init_s']:.0f} s)"
          + note, flush=True)
    return result, text


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vllm_ab.offline",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("qwen3moe", "mixtral", "both"), default="both")
    ap.add_argument("--tp", type=int, default=1, help="tensor parallel size (GPUs)")
    ap.add_argument("--ep", action="store_true", help="enable_expert_parallel=True")
    ap.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True,
                    help="eager (default; starts fast) or --no-enforce-eager (torch.compile "
                         "and CUDA graphs; slower to start)")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--min-prompt", type=int, default=128)
    ap.add_argument("--max-prompt", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the profiled generate (no align-kernel times)")
    ap.add_argument("--custom-all-reduce", action="store_true",
                    help="keep vLLM's custom all-reduce (default: NCCL only)")
    ap.add_argument("--kv-cache-gib", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=None,
                    help="model configs and traces (default: a temporary folder)")
    ap.add_argument("--append", action="store_true",
                    help="keep the other models' rows of an earlier report with the same settings")
    args = ap.parse_args(argv)
    if args.tp < 1 or args.prompts < 1 or args.max_tokens < 2 or args.repeats < 1:
        ap.error("--tp, --prompts, --repeats must be >= 1 and --max-tokens >= 2")
    if not 1 <= args.min_prompt <= args.max_prompt:
        ap.error("need 1 <= --min-prompt <= --max-prompt")
    return args


def analyze_run(trace_dir: Path, out_path: Path) -> dict[str, Any]:
    """Trace summary of one run's workers; each worker's detail to ``out_path``."""
    summaries = [trace.analyze_trace(p) for p in trace.find_traces(trace_dir)]
    summary = trace.summarize_traces(summaries)
    out_path.write_text(json.dumps(
        {"summary": summary, "workers": [
            {"path": s.path, "attribution": s.attribution,
             "prefill": s.per_step("prefill"), "decode": s.per_step("decode"),
             "mixed": s.per_step("mixed"), "align_kernels": s.align_kernels,
             "align_helpers": s.align_helpers}
            for s in summaries]}, indent=1))
    return summary


def run_model(model: str, args: argparse.Namespace, work: Path,
              log_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Both runs of one model; returns (report rows, problems found)."""
    model_dir = write_model(model, work / "models" / model)
    problems: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    extras: dict[str, tuple[dict[str, Any], logs.PluginLog]] = {}
    for variant in environment.VARIANTS:
        tag = f"{model}-{variant}"
        spec = RunSpec(
            model=model, model_dir=str(model_dir), variant=variant, tp=args.tp, ep=args.ep,
            enforce_eager=args.enforce_eager, num_prompts=args.prompts,
            min_prompt=args.min_prompt, max_prompt=args.max_prompt,
            max_tokens=args.max_tokens, repeats=args.repeats, seed=args.seed,
            profile=args.profile, trace_dir=str(work / "traces" / tag),
            result_path=str(log_dir / f"{tag}.result.json"), kv_cache_gib=args.kv_cache_gib,
            custom_all_reduce=args.custom_all_reduce)
        if Path(spec.trace_dir).exists():
            for old in trace.find_traces(Path(spec.trace_dir)):
                old.unlink()
        result, text = run_variant(spec, log_dir / f"{tag}.log", args.timeout)
        if result is None:
            problems.append(f"{tag}: run failed (log: {log_dir / (tag + '.log')})")
            continue
        log = logs.parse_plugin_log(text)
        problems += [f"{tag}: {p}" for p in logs.check_plugin_log(log, variant, args.tp)]
        if not result["deterministic"]:
            problems.append(f"{tag}: token ids differ between repeats of the same run")
        traces: dict[str, Any] = {}
        if args.profile:
            traces = analyze_run(Path(spec.trace_dir), log_dir / f"{tag}.traces.json")
            problems += [f"{tag}: {p}" for p in trace.check_kernels(traces, variant)]
        results[variant] = result
        extras[variant] = (traces, log)
    identical = None
    if set(results) == set(environment.VARIANTS):
        base, plug = results["vllm"]["tokens"], results["plugin"]["tokens"]
        identical = base == plug
        if not identical:
            diff = sum(a != b for a, b in zip(base, plug))
            problems.append(f"{model}: generated token ids differ ({diff} of {len(base)} prompts)")
    rows = [report.make_row(results[v], *extras[v], identical)
            for v in environment.VARIANTS if v in results]
    return rows, problems


def setting(args: argparse.Namespace) -> str:
    """The run settings every row of one report shares."""
    return (f"tp={args.tp}{' ep' if args.ep else ''}, "
            f"{'eager' if args.enforce_eager else 'torch.compile + CUDA graphs'}, "
            f"{args.prompts} prompts of {args.min_prompt}-{args.max_prompt} tokens, "
            f"{args.max_tokens} new tokens")


def write_reports(rows: list[dict[str, Any]], args: argparse.Namespace, log_dir: Path) -> str:
    """Writes the markdown, CSV and PNG for ``rows`` into ``args.out`` and
    the rows themselves (for --append); returns the markdown."""
    out: Path = args.out
    header = (f"vLLM offline, plugin vs vLLM's moe_align_block_size: {environment.device_name()}, "
              f"vLLM {_vllm_version(log_dir)}, {setting(args)}, bf16, dummy weights")
    if not rows:
        header += " (no run finished)"
    md = report.markdown(rows, header)
    (out / f"{STEM}.md").write_text(md)
    write_csv(rows, out / f"{STEM}.csv", report.COLUMNS)
    report.write_png(rows, out / f"{STEM}.png", header[:140])
    (log_dir / "rows.json").write_text(json.dumps({"setting": setting(args), "rows": rows}, indent=1))
    return md


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    environment.kill_groups_on_sigterm()
    models = list(MODELS) if args.model == "both" else [args.model]
    log_dir = args.out / f"{STEM}_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="e2e_offline_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    previous = log_dir / "rows.json"
    if args.append and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("setting") == setting(args):
            rows = [r for r in old["rows"] if r["model"] not in models]
        else:
            print(f"--append: {previous} has other settings ({old.get('setting')}); not merged")
    problems: list[str] = []
    md = ""
    try:
        for model in models:
            model_rows, model_problems = run_model(model, args, work, log_dir)
            rows = [r for r in rows if r["model"] != model] + model_rows
            problems += model_problems
            md = write_reports(rows, args, log_dir)  # after each model: a partial report survives
    finally:
        if not md:
            md = write_reports(rows, args, log_dir)
    print()
    print(md)
    print(f"written: {args.out / (STEM + '.md')}, .csv, .png; logs in {log_dir}")
    _print_short(rows)
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    print("\nOK: tokens identical, plugin line in every process of the plugin runs, kernels as expected")
    return 0


def _vllm_version(log_dir: Path) -> str:
    for p in sorted(log_dir.glob("*.result.json")):
        try:
            return json.loads(p.read_text())["vllm_version"]
        except (OSError, ValueError, KeyError):
            continue
    return "?"


def _print_short(rows: list[dict[str, Any]]) -> None:
    """The last lines: one per run, the numbers that matter."""
    print("\nmodel     run     prefill_ms  decode_ms/step  align_us/prefill  align_us/decode  "
          "plugin  identical")
    for r in rows:
        print(f"{r['model']:<9} {r['variant']:<7} {fmt(r['engine_prefill_ms']):>10}  "
              f"{fmt(r['engine_decode_ms_per_step'], 3):>14}  {fmt(r['prefill_align_us'], 1):>16}  "
              f"{fmt(r['decode_align_us'], 1):>15}  {r['plugin_processes']:>6}  "
              f"{fmt(r['tokens_identical']):>9}")
