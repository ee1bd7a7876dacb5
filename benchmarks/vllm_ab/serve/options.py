"""Command-line options of ``python -m benchmarks.vllm_ab.serve`` and what follows from them.

Defaults follow the benchmark's brief: Qwen3-30B-A3B and DeepSeek-V2-Lite
shapes, concurrency 1, 64 and 256, 1024 input and 256 output tokens, 5 paired
rounds, vLLM's default server settings.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

from benchmarks.vllm_ab.models import FULL_MODELS, kv_bytes_per_token, model_config, param_count

from .commands import BASELINE_MODES, capture_sizes

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = ("qwen3-30b-a3b", "deepseek-v2-lite")
DEFAULT_LOAD = (1024, 256)  # input / output tokens of the decode-heavy load
STRATEGIES = ("auto", "restart", "both-up")
HALF_MEMORY = 0.45  # --gpu-memory-utilization of each server with --strategy both-up
GIB = float(1 << 30)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vllm_ab.serve",
                                 description="vLLM serving A/B benchmark: vLLM's moe_align_block_size "
                                             "vs the plugin's, paired rounds.")
    ap.add_argument("--model", nargs="+", choices=sorted(FULL_MODELS), default=list(DEFAULT_MODELS),
                    help="model shapes to run, one after the other (default: %(default)s)")
    ap.add_argument("--tp", type=int, default=1, help="tensor parallel size (GPUs)")
    ap.add_argument("--ep", action="store_true", help="expert parallel (--enable-expert-parallel)")
    ap.add_argument("--dp", type=int, default=1,
                    help="data parallel size (--data-parallel-size): engine cores, each on tp GPUs")
    ap.add_argument("--executor", choices=("mp", "ray"), default=None,
                    help="--distributed-executor-backend (default: vLLM's choice; ray: results in "
                         "serve_<model>..._ray)")
    ap.add_argument("--strategy", choices=STRATEGIES, default="auto",
                    help="restart: a fresh server per arm and round; both-up: both servers up at "
                         "once on the same GPUs, half the memory each; auto: both-up where the "
                         "model fits half the GPU memory, else restart")
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds, >= 3 (default 5)")
    ap.add_argument("--max-rounds", type=int, default=0, metavar="N",
                    help="after --rounds, more rounds (up to N in all) of only the levels whose TPOT or "
                         "output tok/s ratio interval is still wider than +-(--target-width); 0: none")
    ap.add_argument("--target-width", type=float, default=0.02, metavar="W",
                    help="half-width of the 95%% interval, relative, that --max-rounds aims for "
                         "(default 0.02: +-2%%)")
    ap.add_argument("--order", choices=("abab", "abba"), default="abab",
                    help="arm order: abab (baseline first in every round) or abba (the first "
                         "arm alternates between rounds: cancels a linear drift)")
    ap.add_argument("--server-pairs", type=int, default=1, metavar="K",
                    help="both-up: split the rounds over K server pairs, started afresh, the arm "
                         "started first (and given the first port) alternating between pairs, so the "
                         "intervals include which server came first (default 1; K > 1: results "
                         "and --resume state in serve_<model>..._pairs<K>)")
    ap.add_argument("--first-started", choices=("baseline", "plugin"), default="baseline",
                    help="both-up: the arm whose server starts first (and gets the first port) in the "
                         "first server pair; further pairs alternate (default baseline; plugin: results "
                         "and --resume state in serve_<model>..._pluginfirst)")
    ap.add_argument("--aa", action="store_true",
                    help="A/A: both arms run the baseline (no plugin), everything else as in an A/B "
                         "run; the ratio is the harness's own bias. Results go to serve_<model>..._aa")
    ap.add_argument("--aa-second-arg", action="append", default=[], metavar="ARG",
                    help="with --aa: an extra vllm serve argument for the second baseline server alone "
                         "(repeatable), e.g. --aa-second-arg=--kv-cache-memory-bytes=N: what a change of "
                         "memory placement alone does to the ratio; results in serve_<model>..._aa_varied")
    ap.add_argument("--dependent-launch", action="store_true",
                    help="the plugin arm with VLLM_MOE_ALIGN_PDL=1: its kernels launch as programmatic "
                         "dependents (compute capability 9.0+); results in serve_<model>..._pdl")
    ap.add_argument("--tag", default="", metavar="WORD",
                    help="a name for runs of one setting that must keep apart (e.g. a profiled run "
                         "beside the measured one): results and --resume state in serve_<model>..._<WORD>")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--input-len", type=int, default=DEFAULT_LOAD[0],
                    help="input tokens per request (default %(default)s; another load's results get "
                         "_in<I>_out<O> in their names)")
    ap.add_argument("--output-len", type=int, default=DEFAULT_LOAD[1], help="output tokens per request")
    ap.add_argument("--prompts-per-concurrency", type=int, default=4,
                    help="requests per load: this times the concurrency, at least --min-prompts")
    ap.add_argument("--min-prompts", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="base seed of the random dataset")
    ap.add_argument("--baseline", choices=BASELINE_MODES, default="disable-env",
                    help="baseline arm: disable-env (default: plugin loaded and switched off, so both "
                         "arms have the same vLLM environment and share one torch.compile cache) or "
                         "plugins-off (VLLM_PLUGINS=\"\": a vLLM setting, so each arm compiles "
                         "separately, and their Inductor kernels can differ)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=None,
                    help=f"per server (default: vLLM's; {HALF_MEMORY} with --strategy both-up)")
    ap.add_argument("--capture-sizes", default="default",
                    help="CUDA-graph capture sizes: default (vLLM's), short (powers of two and the "
                         "concurrency levels; faster start-up, said in the report) or a list 1,2,4")
    ap.add_argument("--no-custom-all-reduce", dest="custom_all_reduce", action="store_false",
                    help="--disable-custom-all-reduce on the servers (NCCL only)")
    ap.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                    help="extra vllm serve argument (repeatable; listed in the report)")
    ap.add_argument("--profile", action="store_true",
                    help="after the last round, one profiled load per arm and concurrency: the "
                         "align step's GPU time per prefill, decode and mixed step")
    ap.add_argument("--profile-output-len", type=int, default=32)
    ap.add_argument("--warmup-output-len", type=int, default=16,
                    help="each server start first runs every concurrency once with this output length")
    ap.add_argument("--greedy-prompts", type=int, default=8)
    ap.add_argument("--greedy-tokens", type=int, default=32)
    ap.add_argument("--port", type=int, default=8000, help="baseline server's port; the plugin's +1")
    ap.add_argument("--start-timeout", type=float, default=2400.0, help="seconds for a server to start")
    ap.add_argument("--bench-timeout", type=float, default=3600.0, help="seconds per load")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=None,
                    help="model directories and traces (default: a temporary folder)")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs vLLM")
    ap.add_argument("--resume", action="store_true",
                    help="continue the run in --out with the same options: keep its finished loads, "
                         "checks and profiles, run what is missing")
    ap.add_argument("--time-budget", type=float, default=0.0, metavar="S",
                    help="stop before a server start or round whose cost (as measured so far) would "
                         "end the run after S seconds (0: no budget); continue later with --resume")
    ap.add_argument("--no-cli-check", dest="cli_check", action="store_false",
                    help="skip checking the commands with the installed vLLM's parsers first")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan and the first server's commands, run nothing")
    args = ap.parse_args(argv)
    if args.tp < 1 or args.dp < 1 or args.rounds < 3:
        ap.error("--tp and --dp must be >= 1 and --rounds >= 3 (at least 3 paired rounds per arm)")
    if args.max_rounds and not args.rounds <= args.max_rounds < PROFILE_ROUND:
        ap.error(f"--max-rounds must be 0 or between --rounds and {PROFILE_ROUND - 1}")
    if not 1 <= args.server_pairs <= args.rounds:
        ap.error("--server-pairs must be between 1 and --rounds")
    if args.aa and args.dependent_launch:
        ap.error("--dependent-launch sets the plugin arm's launch; an --aa run has no plugin arm")
    if args.aa_second_arg and not args.aa:
        ap.error("--aa-second-arg varies the second server of an --aa run; an A/B run must not differ "
                 "in anything but the plugin")
    if args.tag and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", args.tag):
        ap.error(f"--tag must be lower-case letters, digits and '-' (a file name part), not {args.tag!r}")
    if not 0 < args.target_width < 1:
        ap.error("--target-width must be in (0, 1)")
    if min(args.concurrency) < 1 or args.input_len < 1 or args.output_len < 2:
        ap.error("--concurrency and --input-len must be >= 1, --output-len >= 2")
    if args.prompts_per_concurrency < 1 or args.min_prompts < 1:
        ap.error("--prompts-per-concurrency and --min-prompts must be >= 1")
    if args.gpu_memory_utilization is not None and not 0.05 <= args.gpu_memory_utilization <= 0.99:
        ap.error("--gpu-memory-utilization must be in [0.05, 0.99]")
    try:
        args.capture = capture_sizes(args.capture_sizes, args.concurrency)
    except ValueError as exc:
        ap.error(str(exc))
    args.concurrency = list(dict.fromkeys(args.concurrency))
    return args


def num_prompts(args: argparse.Namespace, concurrency: int) -> int:
    return max(args.min_prompts, args.prompts_per_concurrency * concurrency)


# The profiled loads' round index in ``bench_seed``: never a measured round,
# so no measured load meets a prompt that the profile put in the prefix cache
PROFILE_ROUND = 99_999


def bench_seed(args: argparse.Namespace, rnd: int, level: int) -> int:
    """The random dataset's seed of round ``rnd`` (1-based), concurrency
    level ``level`` (index): the same for both arms, new prompts everywhere
    else (prefix caching never sees a prompt twice)."""
    return args.seed + 1000 * rnd + level


def gpu_memory_gib() -> Optional[float]:
    """Memory of the first visible GPU in GiB (nvidia-smi), None if unknown."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout.split()
        return float(out[0]) / 1024.0 if out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def memory_need_gib(model: str, args: argparse.Namespace) -> float:
    """Rough GiB per GPU one server needs: bf16 weights (split over the
    tensor-parallel GPUs; with expert parallelism over every GPU, the
    experts being most of an MoE model), the KV cache of the largest
    concurrency's requests, 6 GiB for activations, CUDA graphs and the CUDA
    context."""
    cfg = model_config(model)
    weights = param_count(cfg) * 2 / (args.tp * (args.dp if args.ep else 1))
    kv = max(args.concurrency) * (args.input_len + args.output_len) * kv_bytes_per_token(cfg, args.tp)
    return (weights + kv) / GIB + 6.0


def choose_strategy(model: str, args: argparse.Namespace,
                    gpu_gib: Optional[float]) -> tuple[str, Optional[float], str]:
    """(strategy, --gpu-memory-utilization or None, why) for ``model``."""
    need = memory_need_gib(model, args)
    util = args.gpu_memory_utilization
    if args.strategy == "restart" or (args.strategy == "auto" and gpu_gib is None):
        why = "chosen" if args.strategy == "restart" else "GPU memory unknown"
        return "restart", util, f"restart ({why})"
    half = util if util is not None else HALF_MEMORY
    fits = gpu_gib is not None and need <= half * gpu_gib
    size = (f"needs about {need:.0f} GiB per GPU, {half:g} x {gpu_gib:.0f} GiB = "
            f"{half * gpu_gib:.0f} GiB" if gpu_gib is not None else f"needs about {need:.0f} GiB")
    if args.strategy == "both-up":
        return "both-up", half, f"both-up (chosen; {size}{'' if fits else ': may not fit'})"
    if fits:
        return "both-up", half, f"both-up (auto: {size})"
    return "restart", util, f"restart (auto: {size}, does not fit half a GPU)"
