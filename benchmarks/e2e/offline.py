#!/usr/bin/env python3
"""End to end: vLLM offline inference with and without the plugin.

For each model (a small Qwen3-MoE-style and a small Mixtral-style model, built
from a ``config.json`` written here, weights from vLLM's ``load_format="dummy"``:
random, seeded, nothing downloaded) vLLM runs the same batch twice, each in its
own process tree:

- ``vllm``:   ``VLLM_PLUGINS=""`` (vLLM's allow-list, empty: no general plugin
  is loaded, so vLLM keeps its own ``moe_align_block_size``);
- ``plugin``: ``VLLM_PLUGINS=moe_align`` (this plugin only).

Each run: ``vllm.LLM(...)`` (V1 engine, engine core in its own process, workers
in their own processes for ``--tp`` > 1, Triton attention, Triton fused MoE,
bf16, greedy), one warm-up ``generate``, then ``--repeats`` timed pairs of
``generate`` calls (``max_tokens=1``, then ``max_tokens=--max-tokens``), then one
``generate`` under vLLM's torch profiler (``LLM.start_profile/stop_profile``,
traces of every worker).

Reported per model and run: prefill time of the batch and decode time per step
(from vLLM's per-request metrics and from wall-clock differences), time of the
align kernels per prefill and per decode step (from the traces: kernel durations
summed per engine step, the steps being vLLM's ``execute_*`` trace annotations),
and their share of the step's GPU kernel time. Checked (exit status 1 if not):

- the generated token ids are identical between the two runs (greedy);
- in the ``plugin`` run every vLLM process (driver, engine core, each worker)
  logged the plugin's "moe_align_block_size replaced" line once; in the ``vllm``
  run none did (processes are told apart by a ``[pid=N]`` prefix that this script
  adds to vLLM's log format through ``VLLM_LOGGING_PREFIX``);
- with profiling on, the ``plugin`` run's traces hold the plugin's kernels and
  none of vLLM's align kernels, and the ``vllm`` run's the reverse.

Outputs in ``--out`` (default benchmarks/results/): ``e2e_offline.md``,
``e2e_offline.csv``, ``e2e_offline.png``, and ``e2e_offline_logs/`` (each run's
log and result JSON). Needs vLLM 0.26 (checked against 0.26.0's API) and GPUs.

    python benchmarks/e2e_offline.py [--model qwen3moe|mixtral|both] [--tp N] [--ep]
                                     [--enforce-eager | --no-enforce-eager] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"
STEM = "e2e_offline"
VARIANTS = ("vllm", "plugin")
VLLM_PLUGINS_VALUE = {"vllm": "", "plugin": "moe_align"}
PLUGIN_LINE = "moe_align_block_size replaced"  # vllm_plugin.register()'s log line
PLUGIN_NAME = "vllm-moe-align-plugin"
PID_PREFIX = "[pid=%(process)d] "  # VLLM_LOGGING_PREFIX: a logging format fragment
PID_RE = re.compile(r"\[pid=(\d+)\] (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
RESULT_TAG = "E2E-RESULT "

# Small models of real MoE architectures that vLLM 0.26 runs (transformers 5
# config keys; rope given both ways so either config reader finds it).
MODELS: dict[str, dict[str, Any]] = {
    "qwen3moe": {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 3072,
        "moe_intermediate_size": 384, "num_experts": 128, "num_experts_per_tok": 8,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "output_router_logits": False, "router_aux_loss_coef": 0.001,
        "vocab_size": 16384, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0,
        "use_sliding_window": False, "sliding_window": None, "max_window_layers": 4,
        "tie_word_embeddings": False, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "dtype": "bfloat16",
    },
    "mixtral": {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
        "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 1536,
        "num_local_experts": 8, "num_experts_per_tok": 2, "output_router_logits": False,
        "router_aux_loss_coef": 0.02, "router_jitter_noise": 0.0,
        "vocab_size": 16384, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "hidden_act": "silu", "sliding_window": None, "attention_dropout": 0.0,
        "tie_word_embeddings": False, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16", "dtype": "bfloat16",
    },
}

# Kernel names in the traces (demangled CUDA names, Triton function names).
PLUGIN_ALIGN_RE = re.compile(r"vllm_moe_align")  # every kernel of the plugin's namespace
VLLM_ALIGN_RE = re.compile(r"moe_align_block_size|count_and_sort_expert_tokens")
MOE_GEMM_RE = re.compile(r"fused_moe_kernel")
# vLLM's per-step annotation (gpu_worker.annotate_profile), both of its forms:
#   execute_context_2(300)_generation_30(30)
#   execute_330_context_2(sq300sk300sqsq...)_generation_30(sq30sk...)
STEP_RE = re.compile(
    r"^execute_(?:\d+_)?context_(\d+)\((?:sq)?(\d+)[^)]*\)_generation_(\d+)\((?:sq)?(\d+)")
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")


# --------------------------------------------------------------------------- inputs


def write_model(name: str, directory: Path) -> Path:
    """Writes ``config.json`` of model ``name`` into ``directory`` (created);
    returns the directory. vLLM's dummy loader needs nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(MODELS[name], indent=1) + "\n")
    return directory


def make_prompts(count: int, min_len: int, max_len: int, vocab: int, seed: int) -> list[list[int]]:
    """``count`` prompts of token ids, lengths spread evenly over
    [min_len, max_len], ids uniform in [16, vocab - 16); same seed, same prompts."""
    rng = random.Random(seed)
    lengths = [min_len + (max_len - min_len) * i // max(count - 1, 1) for i in range(count)]
    rng.shuffle(lengths)
    return [[rng.randrange(16, vocab - 16) for _ in range(n)] for n in lengths]


@dataclass
class RunSpec:
    """Everything a child process needs for one ``LLM`` run."""

    model: str
    model_dir: str
    variant: str
    tp: int = 1
    ep: bool = False
    enforce_eager: bool = True
    num_prompts: int = 32
    min_prompt: int = 128
    max_prompt: int = 512
    max_tokens: int = 64
    repeats: int = 3
    seed: int = 0
    profile: bool = True
    trace_dir: str = ""
    result_path: str = ""
    kv_cache_gib: float = 2.0
    custom_all_reduce: bool = False


def llm_kwargs(spec: RunSpec) -> dict[str, Any]:
    """Arguments of ``vllm.LLM`` for ``spec`` (all are vLLM 0.26 EngineArgs /
    LLM parameters). Prefix caching is off (the repeats would hit it), the
    token budget holds the whole batch (one prefill step), and the KV cache is
    a fixed size (no memory profiling of the GPU)."""
    max_len = spec.max_prompt + spec.max_tokens
    kwargs: dict[str, Any] = {
        "model": spec.model_dir,
        "skip_tokenizer_init": True,
        "load_format": "dummy",
        "dtype": "bfloat16",
        "seed": spec.seed,
        "tensor_parallel_size": spec.tp,
        "enable_expert_parallel": spec.ep,
        "enforce_eager": spec.enforce_eager,
        "max_model_len": max(1024, 1 << math.ceil(math.log2(max_len))),
        "max_num_seqs": max(spec.num_prompts, 1),
        "max_num_batched_tokens": max(16384, spec.num_prompts * spec.max_prompt),
        "enable_prefix_caching": False,
        "kv_cache_memory_bytes": int(spec.kv_cache_gib * (1 << 30)),
        "disable_log_stats": False,  # RequestOutput.metrics needs the stats
        "attention_config": {"backend": "TRITON_ATTN"},
        "moe_backend": "triton",  # TritonExperts: the caller of moe_align_block_size
        "disable_custom_all_reduce": not spec.custom_all_reduce,
    }
    if not spec.enforce_eager:
        # torch.compile + CUDA graphs, captured only for the decode batch sizes used
        sizes = sorted({1, 2, 4, 8, 16, 32, spec.num_prompts})
        kwargs["compilation_config"] = {"cudagraph_capture_sizes": [s for s in sizes if s <= 512]}
    if spec.profile:
        kwargs["profiler_config"] = {
            "profiler": "torch",
            "torch_profiler_dir": spec.trace_dir,
            "torch_profiler_with_stack": False,
            "torch_profiler_record_shapes": False,
            "torch_profiler_dump_cuda_time_total": False,
            "torch_profiler_use_gzip": True,
        }
    return kwargs


def child_env(base: dict[str, str], variant: str) -> dict[str, str]:
    """Environment of a run: the plugin allow-list of ``variant``, a pid in
    every vLLM log line, every process started fresh (spawn: each loads the
    plugins itself), no network, and NVLink multicast off everywhere."""
    env = {k: v for k, v in base.items() if k not in ("VLLM_MOE_ALIGN_DISABLE",)}
    env.update({
        "VLLM_PLUGINS": VLLM_PLUGINS_VALUE[variant],
        "VLLM_LOGGING_PREFIX": PID_PREFIX,
        "VLLM_LOGGING_LEVEL": env.get("VLLM_LOGGING_LEVEL", "INFO"),
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        # the bundle leaves FlashInfer out; vLLM 0.26 imports it for its sampler
        # unless told not to (seen on the H100: ModuleNotFoundError at start-up)
        "VLLM_USE_FLASHINFER_SAMPLER": "0",
        # the GPU hosts must never use NVLink multicast (KINDS.md)
        "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1", "VLLM_ALLREDUCE_USE_SYMM_MEM": "0",
    })
    return env


# --------------------------------------------------------------------------- child


def _metrics_times(outputs: list[Any]) -> tuple[Optional[float], Optional[float]]:
    """(prefill ms, decode ms per step): medians over requests of vLLM's
    engine-core timestamps (first token - scheduled; (last - first token) /
    (generated tokens - 1)); None where vLLM gave no metrics."""
    prefill, decode = [], []
    for out in outputs:
        m = getattr(out, "metrics", None)
        if m is None or not getattr(m, "first_token_ts", 0):
            continue
        if getattr(m, "scheduled_ts", 0):
            prefill.append((m.first_token_ts - m.scheduled_ts) * 1e3)
        n = getattr(m, "num_generation_tokens", 0) or len(out.outputs[0].token_ids)
        if n > 1 and m.last_token_ts > m.first_token_ts:
            decode.append((m.last_token_ts - m.first_token_ts) * 1e3 / (n - 1))
    return (statistics.median(prefill) if prefill else None,
            statistics.median(decode) if decode else None)


def run_child(spec: RunSpec) -> dict[str, Any]:
    """One run in this process: LLM, warm-up, timed generates, profiled
    generate. Returns the result dict (also written to spec.result_path)."""
    import vllm
    from vllm import LLM, SamplingParams

    cfg = MODELS[spec.model]
    prompts = [{"prompt_token_ids": p} for p in
               make_prompts(spec.num_prompts, spec.min_prompt, spec.max_prompt,
                            cfg["vocab_size"], spec.seed)]

    def params(n: int) -> Any:
        return SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, detokenize=False)

    t0 = time.perf_counter()
    llm = LLM(**llm_kwargs(spec))
    init_s = time.perf_counter() - t0
    llm.generate(prompts, params(spec.max_tokens), use_tqdm=False)  # warm-up: Triton JIT etc.

    wall_prefill, wall_full, eng_prefill, eng_decode = [], [], [], []
    tokens: Optional[list[list[int]]] = None
    deterministic = True
    for _ in range(spec.repeats):
        t0 = time.perf_counter()
        llm.generate(prompts, params(1), use_tqdm=False)
        wall_prefill.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params(spec.max_tokens), use_tqdm=False)
        wall_full.append((time.perf_counter() - t0) * 1e3)
        got = [list(o.outputs[0].token_ids) for o in outs]
        if tokens is None:
            tokens = got
        elif got != tokens:
            deterministic = False
        p, d = _metrics_times(outs)
        if p is not None:
            eng_prefill.append(p)
        if d is not None:
            eng_decode.append(d)

    profiled_tokens = None
    if spec.profile:
        llm.start_profile()
        outs = llm.generate(prompts, params(spec.max_tokens), use_tqdm=False)
        llm.stop_profile()
        profiled_tokens = [list(o.outputs[0].token_ids) for o in outs]

    wp, wf = statistics.median(wall_prefill), statistics.median(wall_full)
    result = {
        "spec": asdict(spec),
        "vllm_version": vllm.__version__,
        "pid": os.getpid(),
        "init_s": init_s,
        "prompt_tokens": sum(len(p["prompt_token_ids"]) for p in prompts),
        "wall_prefill_ms": wp,
        "wall_full_ms": wf,
        # None when the 1-token generate took longer than the full one (seen
        # with tensor parallel 2: the difference then measures nothing).
        "wall_decode_ms_per_step": (wf - wp) / max(spec.max_tokens - 1, 1) if wf > wp else None,
        "engine_prefill_ms": statistics.median(eng_prefill) if eng_prefill else None,
        "engine_decode_ms_per_step": statistics.median(eng_decode) if eng_decode else None,
        "deterministic": deterministic and (profiled_tokens is None or profiled_tokens == tokens),
        "tokens": tokens,
    }
    if spec.result_path:
        Path(spec.result_path).write_text(json.dumps(result))
    del llm
    return result


# --------------------------------------------------------------------------- logs


@dataclass
class PluginLog:
    """What one run's output says about the plugin, per process."""

    pids: list[int] = field(default_factory=list)  # every pid with a vLLM log line
    plugin_lines: dict[int, int] = field(default_factory=dict)  # pid -> count
    warnings: list[str] = field(default_factory=list)  # plugin lines that are not "replaced"

    @property
    def summary(self) -> str:
        with_line = sum(1 for p in self.pids if self.plugin_lines.get(p, 0) == 1)
        return f"{with_line}/{len(self.pids)}"


def parse_plugin_log(text: str) -> PluginLog:
    """Counts, per pid (from the ``[pid=N]`` prefix), the plugin's
    "replaced" lines; collects the plugin's other lines (warnings)."""
    log = PluginLog()
    seen: dict[int, None] = {}
    for line in text.splitlines():
        m = PID_RE.search(line)
        if m is None:
            continue
        pid = int(m.group(1))
        seen.setdefault(pid)
        if PLUGIN_NAME in line:
            if PLUGIN_LINE in line:
                log.plugin_lines[pid] = log.plugin_lines.get(pid, 0) + 1
            else:
                log.warnings.append(line.strip())
    log.pids = list(seen)
    return log


def expected_processes(tp: int) -> int:
    """vLLM processes of an offline run: the driver, the engine core, and for
    tp > 1 one worker per GPU (tp == 1 runs the worker in the engine core)."""
    return 2 + (tp if tp > 1 else 0)


def check_plugin_log(log: PluginLog, variant: str, tp: int) -> list[str]:
    """Problems with ``log`` for a run of ``variant`` (empty: fine)."""
    problems = []
    if len(log.pids) < expected_processes(tp):
        problems.append(f"{len(log.pids)} vLLM processes logged, expected at least "
                        f"{expected_processes(tp)}")
    if variant == "plugin":
        for pid in log.pids:
            n = log.plugin_lines.get(pid, 0)
            if n != 1:
                problems.append(f"process {pid}: {n} plugin lines (expected 1)")
        problems += [f"plugin warning: {w}" for w in log.warnings]
    elif log.plugin_lines:
        problems.append(f"plugin line in the baseline run (pids {sorted(log.plugin_lines)})")
    return problems


# --------------------------------------------------------------------------- traces


def load_trace(path: Path) -> list[dict[str, Any]]:
    """The events of a chrome trace (``.json`` or ``.json.gz``)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        data = json.load(f)
    return data.get("traceEvents", []) if isinstance(data, dict) else data


@dataclass
class Step:
    """One engine step (``execute_*`` annotation) of one worker."""

    name: str
    kind: str  # prefill | decode | mixed | idle
    start: float
    end: float
    tokens: int = 0  # scheduled tokens (context + generation) from the annotation
    align_us: float = 0.0
    align_launches: int = 0
    kernel_us: float = 0.0
    moe_gemm_launches: int = 0


@dataclass
class TraceSummary:
    """The align kernels of one worker's trace, per engine step."""

    path: str
    steps: list[Step] = field(default_factory=list)
    align_kernels: dict[str, int] = field(default_factory=dict)  # "plugin"/"vllm" -> launches
    align_names: list[str] = field(default_factory=list)
    unattributed_align_us: float = 0.0
    attribution: str = "launch"  # launch | gpu_annotation | none

    def per_step(self, kind: str) -> dict[str, float]:
        """Means over the steps of ``kind``: align us, kernel us, launches."""
        steps = [s for s in self.steps if s.kind == kind]
        if not steps:
            return {}
        n = len(steps)
        return {
            "steps": n,
            "align_us": sum(s.align_us for s in steps) / n,
            "kernel_us": sum(s.kernel_us for s in steps) / n,
            "align_launches": sum(s.align_launches for s in steps) / n,
            "moe_gemm_launches": sum(s.moe_gemm_launches for s in steps) / n,
            "tokens": sum(s.tokens for s in steps) / n,
        }


def classify_step(name: str) -> Optional[str]:
    """'prefill', 'decode', 'mixed' or 'idle' for an ``execute_*``
    annotation name; None for any other name."""
    m = STEP_RE.match(name)
    if m is None:
        return None
    ctx_reqs, gen_reqs = int(m.group(1)), int(m.group(3))
    if ctx_reqs and gen_reqs:
        return "mixed"
    return "prefill" if ctx_reqs else ("decode" if gen_reqs else "idle")


def step_tokens(name: str) -> int:
    """Tokens an ``execute_*`` step ran (context + generation), from its
    annotation name; 0 for any other name. With the top-k, it gives the
    routes of each align call in the step."""
    m = STEP_RE.match(name)
    return int(m.group(2)) + int(m.group(4)) if m else 0


def align_owner(name: str) -> Optional[str]:
    """'plugin' or 'vllm' for an align kernel's name, None otherwise."""
    if PLUGIN_ALIGN_RE.search(name):
        return "plugin"
    if VLLM_ALIGN_RE.search(name):
        return "vllm"
    return None


class _Intervals:
    """Step lookup by time: non-overlapping [start, end] per key."""

    def __init__(self) -> None:
        self._by_key: dict[Any, tuple[list[float], list[Step]]] = {}

    def add(self, key: Any, step: Step) -> None:
        self._by_key.setdefault(key, ([], []))[1].append(step)

    def freeze(self) -> None:
        for key, (_, steps) in list(self._by_key.items()):
            steps.sort(key=lambda s: s.start)
            self._by_key[key] = ([s.start for s in steps], steps)

    def all(self) -> list[Step]:
        """Every step, by start time."""
        return sorted((s for _, steps in self._by_key.values() for s in steps), key=lambda s: s.start)

    def find(self, key: Any, t: float) -> Optional[Step]:
        starts, steps = self._by_key.get(key, ([], []))
        i = bisect_right(starts, t) - 1
        if i >= 0 and steps[i].start <= t <= steps[i].end:
            return steps[i]
        return None


def analyze_trace(path: Path) -> TraceSummary:
    """Attributes every GPU kernel of a worker trace to an engine step and sums
    the align kernels (``align_owner``), all kernels and the fused-MoE GEMM
    launches per step.

    A kernel belongs to the step whose CPU ``execute_*`` annotation (same
    process; a worker runs one step at a time) encloses the CPU launch with the kernel's correlation
    id (CUDA-graph replays included: their kernels carry the graph launch's
    id). Traces without launch events fall back to the GPU-side copy of the
    annotation (``gpu_user_annotation``) enclosing the kernel's start."""
    events = [e for e in load_trace(path) if e.get("ph") == "X"]
    summary = TraceSummary(path=str(path))
    cpu_steps, gpu_steps = _Intervals(), _Intervals()
    launches: dict[int, tuple[Any, float]] = {}
    kernels = []
    for e in events:
        cat, name = e.get("cat", ""), e.get("name", "")
        ts, dur = float(e.get("ts", 0.0)), float(e.get("dur", 0.0))
        if cat in ("user_annotation", "gpu_user_annotation"):
            kind = classify_step(name)
            if kind is not None:
                step = Step(name, kind, ts, ts + dur, tokens=step_tokens(name))
                if cat == "user_annotation":
                    summary.steps.append(step)
                    cpu_steps.add(e.get("pid"), step)
                else:
                    gpu_steps.add(e.get("pid"), step)
        elif cat in LAUNCH_CATS:
            corr = (e.get("args") or {}).get("correlation")
            if corr is not None:
                launches[int(corr)] = (e.get("pid"), ts)
        elif cat == "kernel":
            kernels.append(e)
    cpu_steps.freeze()
    gpu_steps.freeze()
    if not launches:
        summary.attribution = "gpu_annotation"
        summary.steps = gpu_steps.all()
    names: set[str] = set()
    for k in kernels:
        name = k.get("name", "")
        ts, dur = float(k.get("ts", 0.0)), float(k.get("dur", 0.0))
        corr = (k.get("args") or {}).get("correlation")
        step = None
        if summary.attribution == "launch" and corr is not None and int(corr) in launches:
            key, launch_ts = launches[int(corr)]
            step = cpu_steps.find(key, launch_ts)
        elif summary.attribution == "gpu_annotation":
            step = gpu_steps.find(k.get("pid"), ts)
        owner = align_owner(name)
        if owner is not None:
            summary.align_kernels[owner] = summary.align_kernels.get(owner, 0) + 1
            names.add(name)
        if step is None:
            if owner is not None:
                summary.unattributed_align_us += dur
            continue
        step.kernel_us += dur
        if owner is not None:
            step.align_us += dur
            step.align_launches += 1
        if MOE_GEMM_RE.search(name):
            step.moe_gemm_launches += 1
    if summary.attribution == "launch" and not summary.steps:
        summary.attribution = "none"
    summary.align_names = sorted(names)
    return summary


def find_traces(trace_dir: Path) -> list[Path]:
    """Trace files of a profiler directory (one per worker), sorted."""
    return sorted(p for p in trace_dir.rglob("*") if p.is_file()
                  and (p.name.endswith(".json") or p.name.endswith(".json.gz")))


def summarize_traces(traces: list[TraceSummary]) -> dict[str, Any]:
    """Per-step align time, kernel time and launches, averaged over the
    workers (each worker runs the align of its own MoE layers' shard)."""
    out: dict[str, Any] = {"workers": len(traces)}
    for kind in ("prefill", "decode"):
        per = [t.per_step(kind) for t in traces]
        per = [p for p in per if p]
        if not per:
            continue
        for key in ("align_us", "kernel_us", "align_launches", "moe_gemm_launches", "tokens"):
            out[f"{kind}_{key}"] = statistics.mean(p[key] for p in per)
        out[f"{kind}_steps"] = min(int(p["steps"]) for p in per)
    kernels: dict[str, int] = {}
    for t in traces:
        for owner, n in t.align_kernels.items():
            kernels[owner] = kernels.get(owner, 0) + n
    out["align_kernels"] = kernels
    out["align_names"] = sorted({n for t in traces for n in t.align_names})
    out["unattributed_align_us"] = sum(t.unattributed_align_us for t in traces)
    out["attribution"] = ",".join(sorted({t.attribution for t in traces}))
    return out


def check_kernels(summary: dict[str, Any], variant: str) -> list[str]:
    """Problems with the align kernels seen in a run's traces."""
    kernels = summary.get("align_kernels", {})
    if summary.get("workers", 0) == 0:
        return ["no trace file found"]
    if variant == "plugin":
        problems = [] if kernels.get("plugin") else ["no plugin align kernel in the traces"]
        if kernels.get("vllm"):
            problems.append(f"{kernels['vllm']} launches of vLLM's align kernels in the plugin run")
        return problems
    problems = [] if kernels.get("vllm") else ["no vLLM align kernel in the baseline traces"]
    if kernels.get("plugin"):
        problems.append(f"{kernels['plugin']} plugin kernel launches in the baseline run")
    return problems


# --------------------------------------------------------------------------- report

COLUMNS = (
    "model", "variant", "tp", "ep", "eager", "prompts", "prompt_tokens", "max_tokens",
    "engine_prefill_ms", "engine_decode_ms_per_step", "wall_prefill_ms",
    "wall_decode_ms_per_step", "prefill_align_us", "decode_align_us", "prefill_align_share",
    "decode_align_share", "prefill_align_launches", "decode_align_launches",
    "decode_moe_gemm_launches", "prefill_step_tokens", "decode_step_tokens", "plugin_processes",
    "tokens_identical", "init_s",
)


def make_row(result: dict[str, Any], traces: dict[str, Any], log: PluginLog,
             identical: Optional[bool]) -> dict[str, Any]:
    """One CSV/markdown row from a run's result, trace summary and log."""
    spec = result["spec"]

    def share(kind: str) -> Optional[float]:
        a, k = traces.get(f"{kind}_align_us"), traces.get(f"{kind}_kernel_us")
        return a / k if a is not None and k else None

    return {
        "model": spec["model"], "variant": spec["variant"], "tp": spec["tp"], "ep": spec["ep"],
        "eager": spec["enforce_eager"], "prompts": spec["num_prompts"],
        "prompt_tokens": result["prompt_tokens"], "max_tokens": spec["max_tokens"],
        "engine_prefill_ms": result.get("engine_prefill_ms"),
        "engine_decode_ms_per_step": result.get("engine_decode_ms_per_step"),
        "wall_prefill_ms": result["wall_prefill_ms"],
        "wall_decode_ms_per_step": result["wall_decode_ms_per_step"],
        "prefill_align_us": traces.get("prefill_align_us"),
        "decode_align_us": traces.get("decode_align_us"),
        "prefill_align_share": share("prefill"), "decode_align_share": share("decode"),
        "prefill_align_launches": traces.get("prefill_align_launches"),
        "decode_align_launches": traces.get("decode_align_launches"),
        "decode_moe_gemm_launches": traces.get("decode_moe_gemm_launches"),
        "prefill_step_tokens": traces.get("prefill_tokens"),
        "decode_step_tokens": traces.get("decode_tokens"),
        "plugin_processes": log.summary, "tokens_identical": identical,
        "init_s": result.get("init_s"),
    }


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v * 100:.1f}%" if digits < 0 else f"{v:.{digits}f}"
    return str(v)


def _arrow(base: dict[str, Any], plugin: dict[str, Any], key: str, digits: int = 1) -> str:
    """``vLLM -> plugin (ratio x)`` of one column."""
    a, b = base.get(key), plugin.get(key)
    ratio = f" ({a / b:.2f}x)" if a and b else ""
    return f"{_fmt(a, digits)} -> {_fmt(b, digits)}{ratio}"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    """The report: the per-run table and, per model, plugin vs vLLM."""
    lines = [header, "",
             "| model | run | prefill ms (engine / wall) | decode ms/step (engine / wall) | "
             "align us/prefill step | align us/decode step | align share prefill / decode | "
             "tokens/step prefill / decode | plugin line / processes | tokens identical |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variant']} | {_fmt(r['engine_prefill_ms'])} / "
            f"{_fmt(r['wall_prefill_ms'])} | {_fmt(r['engine_decode_ms_per_step'], 3)} / "
            f"{_fmt(r['wall_decode_ms_per_step'], 3)} | {_fmt(r['prefill_align_us'], 1)} | "
            f"{_fmt(r['decode_align_us'], 1)} | {_fmt(r['prefill_align_share'], -1)} / "
            f"{_fmt(r['decode_align_share'], -1)} | {_fmt(r.get('prefill_step_tokens'), 0)} / "
            f"{_fmt(r.get('decode_step_tokens'), 0)} | {r['plugin_processes']} | "
            f"{_fmt(r['tokens_identical'])} |")
    lines += ["", "| model | align us/prefill step: vLLM -> plugin | align us/decode step: vLLM -> "
              "plugin | prefill ms (engine) | decode ms/step (engine) |", "|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {r["variant"]: r for r in rows if r["model"] == model}
        if set(by) != set(VARIANTS):
            continue
        v, p = by["vllm"], by["plugin"]
        lines.append(f"| {model} | {_arrow(v, p, 'prefill_align_us')} | "
                     f"{_arrow(v, p, 'decode_align_us')} | {_arrow(v, p, 'engine_prefill_ms', 2)} | "
                     f"{_arrow(v, p, 'engine_decode_ms_per_step', 3)} |")
    lines += ["", "align: summed durations of the align kernels (vLLM's `moe_align_block_size*` / "
              "`count_and_sort_expert_tokens*`, the plugin's `vllm_moe_align::*`) inside each engine "
              "step's `execute_*` annotation, mean over steps and workers; share: of all GPU kernel "
              "time in those steps; tokens/step: from the annotation (context + generation), mean "
              "over those steps (routes per align call = tokens x top-k). Engine times: medians "
              "of vLLM's per-request metrics (first token "
              "- scheduled; (last - first token) / (tokens - 1)); wall: `generate(max_tokens=1)` and "
              "`(full - that) / (max_tokens - 1)`."]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})


def write_png(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Bars: align us per step (prefill, decode) and engine step times, vLLM
    vs plugin, per model. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = list(dict.fromkeys(r["model"] for r in rows))
    panels = [("prefill_align_us", "align us / prefill step"),
              ("decode_align_us", "align us / decode step"),
              ("engine_prefill_ms", "prefill ms (engine)"),
              ("engine_decode_ms_per_step", "decode ms / step (engine)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    width = 0.38
    for ax, (key, label) in zip(axes, panels):
        for j, variant in enumerate(VARIANTS):
            vals = []
            for m in models:
                r = next((x for x in rows if x["model"] == m and x["variant"] == variant), None)
                vals.append(r.get(key) or 0.0 if r else 0.0)
            xs = [i + (j - 0.5) * width for i in range(len(models))]
            ax.bar(xs, vals, width, label="vLLM" if variant == "vllm" else "plugin")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models)
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- driver


_ACTIVE: dict[str, Any] = {}  # the running child (for SIGTERM)


def _kill_group(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Kills a child's whole process group (vLLM's engine core and workers
    included), ignoring a group that is already gone."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _on_sigterm(signum: int, frame: Any) -> None:
    proc = _ACTIVE.get("proc")
    if proc is not None:
        _kill_group(proc)
    raise SystemExit(f"stopped by signal {signum}")


def run_variant(spec: RunSpec, log_path: Path, timeout: float) -> tuple[Optional[dict[str, Any]], str]:
    """Runs ``spec`` in a child process (this script with ``--child``) in a
    process group of its own, output to ``log_path``; after ``timeout``
    seconds, or once the child has exited, the whole group is killed (no
    engine core or worker outlives its run and holds a GPU). A child that
    wrote its result and then hung on shutdown still counts.
    Returns (result or None, the log text)."""
    spec_path = log_path.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(asdict(spec)))
    result_path = Path(spec.result_path)
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)]
    print(f"  [{spec.model} / {spec.variant}] {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=child_env(dict(os.environ), spec.variant), stdout=log,
                                stderr=subprocess.STDOUT, cwd=str(ROOT), start_new_session=True)
        _ACTIVE["proc"] = proc
        try:
            code: Optional[int] = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            _kill_group(proc)
            _ACTIVE.pop("proc", None)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.tp < 1 or args.prompts < 1 or args.max_tokens < 2 or args.repeats < 1:
        ap.error("--tp, --prompts, --repeats must be >= 1 and --max-tokens >= 2")
    if not 1 <= args.min_prompt <= args.max_prompt:
        ap.error("need 1 <= --min-prompt <= --max-prompt")
    return args


def run_model(model: str, args: argparse.Namespace, work: Path,
              logs: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Both runs of one model; returns (report rows, problems found)."""
    model_dir = write_model(model, work / "models" / model)
    problems: list[str] = []
    results: dict[str, dict[str, Any]] = {}
    extras: dict[str, tuple[dict[str, Any], PluginLog]] = {}
    for variant in VARIANTS:
        tag = f"{model}-{variant}"
        spec = RunSpec(
            model=model, model_dir=str(model_dir), variant=variant, tp=args.tp, ep=args.ep,
            enforce_eager=args.enforce_eager, num_prompts=args.prompts,
            min_prompt=args.min_prompt, max_prompt=args.max_prompt,
            max_tokens=args.max_tokens, repeats=args.repeats, seed=args.seed,
            profile=args.profile, trace_dir=str(work / "traces" / tag),
            result_path=str(logs / f"{tag}.result.json"), kv_cache_gib=args.kv_cache_gib,
            custom_all_reduce=args.custom_all_reduce)
        if Path(spec.trace_dir).exists():
            for old in find_traces(Path(spec.trace_dir)):
                old.unlink()
        result, text = run_variant(spec, logs / f"{tag}.log", args.timeout)
        if result is None:
            problems.append(f"{tag}: run failed (log: {logs / (tag + '.log')})")
            continue
        log = parse_plugin_log(text)
        problems += [f"{tag}: {p}" for p in check_plugin_log(log, variant, args.tp)]
        if not result["deterministic"]:
            problems.append(f"{tag}: token ids differ between repeats of the same run")
        traces: dict[str, Any] = {}
        if args.profile:
            summaries = [analyze_trace(p) for p in find_traces(Path(spec.trace_dir))]
            traces = summarize_traces(summaries)
            (logs / f"{tag}.traces.json").write_text(json.dumps(
                {"summary": traces, "workers": [
                    {"path": s.path, "attribution": s.attribution,
                     "prefill": s.per_step("prefill"), "decode": s.per_step("decode"),
                     "mixed": s.per_step("mixed"), "align_kernels": s.align_kernels}
                    for s in summaries]}, indent=1))
            problems += [f"{tag}: {p}" for p in check_kernels(traces, variant)]
        results[variant] = result
        extras[variant] = (traces, log)
    identical = None
    if set(results) == set(VARIANTS):
        base, plug = results["vllm"]["tokens"], results["plugin"]["tokens"]
        identical = base == plug
        if not identical:
            diff = sum(a != b for a, b in zip(base, plug))
            problems.append(f"{model}: generated token ids differ ({diff} of {len(base)} prompts)")
    rows = [make_row(results[v], *extras[v], identical) for v in VARIANTS if v in results]
    return rows, problems


def setting(args: argparse.Namespace) -> str:
    """The run settings every row of one report shares."""
    return (f"tp={args.tp}{' ep' if args.ep else ''}, "
            f"{'eager' if args.enforce_eager else 'torch.compile + CUDA graphs'}, "
            f"{args.prompts} prompts of {args.min_prompt}-{args.max_prompt} tokens, "
            f"{args.max_tokens} new tokens")


def write_reports(rows: list[dict[str, Any]], args: argparse.Namespace, logs: Path) -> str:
    """Writes the markdown, CSV and PNG for ``rows`` into ``args.out`` and
    the rows themselves (for --append); returns the markdown."""
    out: Path = args.out
    header = (f"vLLM offline, plugin vs vLLM's moe_align_block_size: {_device_name()}, vLLM "
              f"{_vllm_version(logs)}, {setting(args)}, bf16, dummy weights")
    if not rows:
        header += " (no run finished)"
    md = markdown(rows, header)
    (out / f"{STEM}.md").write_text(md)
    write_csv(rows, out / f"{STEM}.csv")
    write_png(rows, out / f"{STEM}.png", header[:140])
    (logs / "rows.json").write_text(json.dumps({"setting": setting(args), "rows": rows}, indent=1))
    return md


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        spec = RunSpec(**json.loads(args.child.read_text()))
        result = run_child(spec)
        print(RESULT_TAG + json.dumps({k: v for k, v in result.items() if k != "tokens"}), flush=True)
        return 0

    signal.signal(signal.SIGTERM, _on_sigterm)
    models = list(MODELS) if args.model == "both" else [args.model]
    logs = args.out / f"{STEM}_logs"
    logs.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="e2e_offline_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    previous = logs / "rows.json"
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
            model_rows, model_problems = run_model(model, args, work, logs)
            rows = [r for r in rows if r["model"] != model] + model_rows
            problems += model_problems
            md = write_reports(rows, args, logs)  # after each model: a partial report survives
    finally:
        if not md:
            md = write_reports(rows, args, logs)
    print()
    print(md)
    print(f"written: {args.out / (STEM + '.md')}, .csv, .png; logs in {logs}")
    _print_short(rows)
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    print("\nOK: tokens identical, plugin line in every process of the plugin runs, kernels as expected")
    return 0


def _device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.split("\n")
        names = [n.strip() for n in out if n.strip()]
        return f"{len(names)}x {names[0]}" if names else "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def _vllm_version(logs: Path) -> str:
    for p in sorted(logs.glob("*.result.json")):
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
        print(f"{r['model']:<9} {r['variant']:<7} {_fmt(r['engine_prefill_ms']):>10}  "
              f"{_fmt(r['engine_decode_ms_per_step'], 3):>14}  {_fmt(r['prefill_align_us'], 1):>16}  "
              f"{_fmt(r['decode_align_us'], 1):>15}  {r['plugin_processes']:>6}  "
              f"{_fmt(r['tokens_identical']):>9}")


if __name__ == "__main__":
    sys.exit(main())
