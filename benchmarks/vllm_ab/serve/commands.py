"""The command lines and environments of a serving run (vLLM 0.26 options).

Both ``vllm serve`` and ``vllm bench serve`` run as ``python -m
vllm.entrypoints.cli.main ...`` (the module behind the ``vllm`` console
script), so they work where vLLM is on ``PYTHONPATH`` without its scripts.

The server keeps vLLM's defaults (V1 engine, torch.compile and CUDA graphs,
chunked prefill, prefix caching, vLLM's choice of attention and MoE
backends); the harness sets only what it must: the model directory with
``--load-format dummy``, name, host and port, the parallel layout, and, where
asked, ``--gpu-memory-utilization`` (two servers on one GPU),
``--cudagraph-capture-sizes`` (a shorter list: faster start-up), the torch
profiler (``--profiler-config``; vLLM 0.26 has no VLLM_TORCH_PROFILER_DIR) and
``--disable-custom-all-reduce``. Everything set is listed in the report.

The arms differ in their environment only (``server_env``): ``plugin`` has
this plugin only (``VLLM_PLUGINS=moe_align``); ``vllm`` has it loaded but
switched off (baseline mode ``disable-env``, the default:
``VLLM_MOE_ALIGN_DISABLE=1``, so vLLM keeps its own function) or no general
plugin at all (``plugins-off``: ``VLLM_PLUGINS=""``). The default keeps every
vLLM setting of the two arms equal: vLLM hashes its own environment
variables, ``VLLM_PLUGINS`` among them but not the plugin's switch, into the
torch.compile cache key, so with ``plugins-off`` each arm compiles the model
separately and the Triton kernels Inductor generates and tunes at run time
can differ between the arms by tens of microseconds per step, whichever arm
has the plugin. For the same reason the profiler's trace folder (part of
vLLM's config) is one path for every server. In A/A mode
(``--aa``) both arms get the baseline's environment: the ratio of two
identical servers is the harness's own bias (start order, port, memory
placement). With ``--dependent-launch`` the plugin arm also gets
``VLLM_MOE_ALIGN_PDL=1`` (programmatic dependent launch of its kernels);
neither arm inherits that switch otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from benchmarks.vllm_ab import environment

ARMS = environment.VARIANTS  # ("vllm", "plugin"): baseline first
ARM_LABELS = {"vllm": "baseline", "plugin": "plugin"}
# A/A mode: both arms run the baseline; the second arm keeps the key
# "plugin" (its port, its place in every round) but not the plugin
AA_LABELS = {"vllm": "baseline A", "plugin": "baseline B"}
BASELINE_MODES = ("plugins-off", "disable-env")
CLI_MODULE = "vllm.entrypoints.cli.main"
# the variables that tell the arms apart, as the plan shows them
SWITCHES = ("VLLM_PLUGINS", *environment.PLUGIN_SWITCHES)
# CUDA-graph batch sizes of ``--capture-sizes short``: powers of two (plus
# the concurrency levels) instead of vLLM's default of every multiple of 8
# up to 256 and of 16 up to 512 (about 50 sizes)
SHORT_CAPTURE = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class ServerSpec:
    """One ``vllm serve`` process tree: everything that makes its command line."""

    arm: str
    model: str  # served model name (a key of models.FULL_MODELS)
    model_dir: Path
    port: int
    tp: int = 1
    ep: bool = False
    dp: int = 1
    executor: Optional[str] = None  # --distributed-executor-backend; None: vLLM's choice
    host: str = "127.0.0.1"
    gpu_memory_utilization: Optional[float] = None  # None: vLLM's default
    capture_sizes: Optional[tuple[int, ...]] = None  # None: vLLM's default
    profile_dir: Optional[Path] = None  # torch profiler traces (workers) go here
    custom_all_reduce: bool = True
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def arm_labels(aa: bool) -> dict[str, str]:
    """What the report and the progress lines call each arm."""
    return AA_LABELS if aa else ARM_LABELS


def switch_of(arm: str, aa: bool) -> str:
    """The arm whose plugin switch a server of ``arm`` gets: its own, or in
    A/A mode the baseline's for both."""
    return "vllm" if aa else arm


def capture_sizes(choice: str, concurrency: Sequence[int]) -> Optional[tuple[int, ...]]:
    """``--capture-sizes`` value -> the sizes to pass (None: vLLM's default).
    ``short``: ``SHORT_CAPTURE`` plus every concurrency level up to 512;
    otherwise a comma-separated list of sizes."""
    if choice == "default":
        return None
    if choice == "short":
        return tuple(sorted({*SHORT_CAPTURE, *(c for c in concurrency if c <= 512)}))
    try:
        sizes = tuple(sorted({int(x) for x in choice.split(",") if x.strip()}))
    except ValueError:
        raise ValueError(f"--capture-sizes: 'default', 'short' or sizes like 1,2,4 (got {choice!r})") \
            from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--capture-sizes: sizes must be >= 1 (got {choice!r})")
    return sizes


def profiler_config(trace_dir: Path) -> dict[str, object]:
    """vLLM's torch profiler for the workers (one gzipped trace per worker
    and start/stop), no stacks or shapes, no API-server trace."""
    return {"profiler": "torch", "torch_profiler_dir": str(trace_dir),
            "torch_profiler_with_stack": False, "torch_profiler_record_shapes": False,
            "torch_profiler_dump_cuda_time_total": False, "torch_profiler_use_gzip": True,
            "ignore_frontend": True}


def serve_command(spec: ServerSpec, python: str) -> list[str]:
    """``vllm serve`` for ``spec``."""
    cmd = [python, "-m", CLI_MODULE, "serve", str(spec.model_dir),
           "--served-model-name", spec.model, "--host", spec.host, "--port", str(spec.port),
           "--load-format", "dummy"]
    if spec.tp > 1:
        cmd += ["--tensor-parallel-size", str(spec.tp)]
    if spec.dp > 1:
        cmd += ["--data-parallel-size", str(spec.dp)]
    if spec.ep:
        cmd += ["--enable-expert-parallel"]
    if spec.executor is not None:
        cmd += ["--distributed-executor-backend", spec.executor]
    if spec.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}"]
    if spec.capture_sizes is not None:
        cmd += ["--cudagraph-capture-sizes", *map(str, spec.capture_sizes)]
    if spec.profile_dir is not None:
        cmd += ["--profiler-config", json.dumps(profiler_config(spec.profile_dir))]
    if not spec.custom_all_reduce:
        cmd += ["--disable-custom-all-reduce"]
    return cmd + list(spec.extra_args)


def non_defaults(spec: ServerSpec) -> list[str]:
    """The server options a report must mention: what differs from vLLM's
    defaults besides the model, the dummy weights, name, host and port."""
    notes = []
    if spec.gpu_memory_utilization is not None:
        notes.append(f"--gpu-memory-utilization {spec.gpu_memory_utilization:g}")
    if spec.capture_sizes is not None:
        notes.append("--cudagraph-capture-sizes " + " ".join(map(str, spec.capture_sizes))
                     + " (shortened to save start-up time; vLLM's default captures about 50 sizes)")
    if spec.profile_dir is not None:
        notes.append("--profiler-config (torch profiler, started only for the profiled loads)")
    if not spec.custom_all_reduce:
        notes.append("--disable-custom-all-reduce")
    if spec.executor is not None:
        notes.append(f"--distributed-executor-backend {spec.executor}")
    if spec.extra_args:
        notes.append(" ".join(spec.extra_args))
    return notes


def server_env(base: dict[str, str], arm: str, baseline_mode: str = "disable-env",
               dependent_launch: bool = False) -> dict[str, str]:
    """The environment of an arm's server: ``environment.child_env`` (pid in
    every log line, spawned workers, no network, NVLink multicast off) with
    the plugin switched as ``baseline_mode`` says, and for the plugin arm
    programmatic dependent launch when ``dependent_launch``."""
    if arm not in ARMS or baseline_mode not in BASELINE_MODES:
        raise ValueError(f"arm {arm!r} / baseline mode {baseline_mode!r}")
    env = environment.child_env(base, arm)
    if baseline_mode == "disable-env":
        env["VLLM_PLUGINS"] = environment.VLLM_PLUGINS_VALUE["plugin"]
        if arm == "vllm":
            env[environment.DISABLE_ENV] = "1"
    if dependent_launch and arm == "plugin":
        env[environment.PDL_ENV] = "1"
    return env


def client_env(base: dict[str, str]) -> dict[str, str]:
    """The environment of ``vllm bench serve`` and other client processes:
    no general plugins (the client runs no model), no network."""
    env = {k: v for k, v in base.items() if k not in environment.PLUGIN_SWITCHES}
    env.update({"VLLM_PLUGINS": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"})
    return env


@dataclass(frozen=True)
class BenchSpec:
    """One ``vllm bench serve`` run against a server."""

    server: ServerSpec
    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    seed: int
    result_file: Path
    metadata: tuple[tuple[str, str], ...] = ()


def bench_command(b: BenchSpec, python: str) -> list[str]:
    """``vllm bench serve`` with ``bench_args(b)`` as its own command."""
    return [python, "-m", CLI_MODULE, "bench", "serve", *bench_args(b)]


def bench_args(b: BenchSpec) -> list[str]:
    """The options of ``vllm bench serve``: the random dataset (fixed lengths, seed
    ``b.seed``), ``b.num_prompts`` requests all queued at once
    (request rate inf) with at most ``b.concurrency`` in flight, greedy,
    EOS ignored (every request generates ``output_len`` tokens), streamed
    through ``/v1/completions``; the result JSON to ``b.result_file``."""
    s = b.server
    cmd = ["--backend", "openai", "--endpoint", "/v1/completions",
           "--host", s.host, "--port", str(s.port),
           "--model", str(s.model_dir), "--served-model-name", s.model,
           "--tokenizer", str(s.model_dir),
           "--dataset-name", "random", "--random-input-len", str(b.input_len),
           "--random-output-len", str(b.output_len), "--random-range-ratio", "0.0",
           "--num-prompts", str(b.num_prompts), "--max-concurrency", str(b.concurrency),
           "--request-rate", "inf", "--seed", str(b.seed), "--ignore-eos", "--temperature", "0",
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
           "--disable-tqdm", "--save-result", "--result-dir", str(b.result_file.parent),
           "--result-filename", b.result_file.name]
    if b.metadata:
        cmd += ["--metadata", *(f"{k}={v}" for k, v in b.metadata)]
    return cmd
