"""The processes vLLM runs in: the two variants' environments, the engine
settings every run shares, and process groups that end with their run.

A run of variant ``vllm`` has ``VLLM_PLUGINS=""`` (vLLM's allow-list, empty:
no general plugin is loaded, so vLLM keeps its own ``moe_align_block_size``),
a run of ``plugin`` has ``VLLM_PLUGINS=moe_align`` (this plugin only). Every
vLLM log line carries a ``[pid=N]`` prefix (``VLLM_LOGGING_PREFIX``), so the
plugin's line can be checked per process (``logs``).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, Optional

VARIANTS = ("vllm", "plugin")
VLLM_PLUGINS_VALUE = {"vllm": "", "plugin": "moe_align"}
PID_PREFIX = "[pid=%(process)d] "  # VLLM_LOGGING_PREFIX: a logging format fragment
# The plugin's own switches: off, and programmatic dependent launch
DISABLE_ENV = "VLLM_MOE_ALIGN_DISABLE"
PDL_ENV = "VLLM_MOE_ALIGN_PDL"
PLUGIN_SWITCHES = (DISABLE_ENV, PDL_ENV)


def child_env(base: dict[str, str], variant: str) -> dict[str, str]:
    """Environment of a run: the plugin allow-list of ``variant``, a pid in
    every vLLM log line, every process started fresh (spawn: each loads the
    plugins itself), no network, NVLink multicast off everywhere, and every
    Ray worker's lines passed on as they are. The plugin's own switches
    (off, dependent launch) are not inherited: a run sets them itself."""
    env = {k: v for k, v in base.items() if k not in PLUGIN_SWITCHES}
    env.update({
        "VLLM_PLUGINS": VLLM_PLUGINS_VALUE[variant],
        "VLLM_LOGGING_PREFIX": PID_PREFIX,
        "VLLM_LOGGING_LEVEL": env.get("VLLM_LOGGING_LEVEL", "INFO"),
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        # FlashInfer is not needed; vLLM 0.26 imports it for its sampler unless
        # told not to (a ModuleNotFoundError at start-up where it is missing)
        "VLLM_USE_FLASHINFER_SAMPLER": "0",
        # NVLink multicast stays off in every library that could use it
        "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1", "VLLM_ALLREDUCE_USE_SYMM_MEM": "0",
        # Ray (--distributed-executor-backend ray) forwards its workers' output
        # and by default folds lines that differ only in words with digits
        # into one "[repeated Nx across cluster]": the plugin's line of the
        # second worker would vanish, pid and all
        "RAY_DEDUP_LOGS": "0",
    })
    return env


def engine_args(*, model_dir: str, tp: int, ep: bool, enforce_eager: bool, seed: int,
                max_num_seqs: int, max_len: int, max_num_batched_tokens: int,
                kv_cache_gib: float, custom_all_reduce: bool,
                trace_dir: Optional[str] = None) -> dict[str, Any]:
    """vLLM engine arguments (vLLM 0.26 EngineArgs names) every run shares:
    dummy weights, bf16, Triton attention, Triton fused MoE (TritonExperts:
    the caller of ``moe_align_block_size``), no prefix caching, a KV cache of
    a fixed size (no memory profiling of the GPU), NCCL all-reduce unless
    ``custom_all_reduce``. ``max_len``: longest prompt + generated tokens;
    ``trace_dir``: torch profiler traces there (``profiler_config``)."""
    kwargs: dict[str, Any] = {
        "model": model_dir,
        "skip_tokenizer_init": True,
        "load_format": "dummy",
        "dtype": "bfloat16",
        "seed": seed,
        "tensor_parallel_size": tp,
        "enable_expert_parallel": ep,
        "enforce_eager": enforce_eager,
        "max_model_len": max(1024, 1 << math.ceil(math.log2(max_len))),
        "max_num_seqs": max(max_num_seqs, 1),
        "max_num_batched_tokens": max_num_batched_tokens,
        "enable_prefix_caching": False,
        "kv_cache_memory_bytes": int(kv_cache_gib * (1 << 30)),
        "attention_config": {"backend": "TRITON_ATTN"},
        "moe_backend": "triton",
        "disable_custom_all_reduce": not custom_all_reduce,
    }
    if not enforce_eager:
        # torch.compile + CUDA graphs, captured only for the decode batch sizes used
        sizes = sorted({1, 2, 4, 8, 16, 32, max_num_seqs})
        kwargs["compilation_config"] = {"cudagraph_capture_sizes": [s for s in sizes if s <= 512]}
    if trace_dir is not None:
        kwargs["profiler_config"] = profiler_config(trace_dir)
    return kwargs


def profiler_config(trace_dir: str) -> dict[str, Any]:
    """vLLM's torch profiler: one gzipped chrome trace per worker in
    ``trace_dir``, no stacks or shapes (small traces)."""
    return {
        "profiler": "torch",
        "torch_profiler_dir": trace_dir,
        "torch_profiler_with_stack": False,
        "torch_profiler_record_shapes": False,
        "torch_profiler_dump_cuda_time_total": False,
        "torch_profiler_use_gzip": True,
    }


# --------------------------------------------------------------------------- process groups

_RUNNING: dict[int, subprocess.Popen[bytes]] = {}  # pid -> child, for SIGTERM


def start_in_group(cmd: list[str], env: dict[str, str], log_path: Path,
                   cwd: Path) -> subprocess.Popen[bytes]:
    """Starts ``cmd`` in a process group of its own, stdout and stderr to
    ``log_path``; ``kill_group`` ends it with everything it started (vLLM's
    engine core and workers included)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd),
                                start_new_session=True)
    return track(proc)


def track(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Remembers a child started in a group of its own, so that SIGTERM
    (``kill_groups_on_sigterm``) ends its group too; returns it."""
    _RUNNING[proc.pid] = proc
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kills a child's whole process group, ignoring a group already gone,
    and reaps the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    _RUNNING.pop(proc.pid, None)


def run_in_group(cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path,
                 timeout: float) -> Optional[int]:
    """Runs ``cmd`` (``start_in_group``) until it exits or ``timeout``
    seconds pass, then kills its group either way (no engine core or worker
    outlives its run and holds a GPU). Returns the exit status, None on timeout."""
    proc = start_in_group(cmd, env, log_path, cwd)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        kill_group(proc)


def kill_groups_on_sigterm() -> None:
    """On SIGTERM, kill every running child's group, then exit."""

    def handler(signum: int, frame: Any) -> None:
        for proc in list(_RUNNING.values()):
            kill_group(proc)
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def device_name() -> str:
    """``"<count>x <name>"`` of the visible NVIDIA GPUs, from nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.split("\n")
        names = [n.strip() for n in out if n.strip()]
        return f"{len(names)}x {names[0]}" if names else "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def machine_id() -> str:
    """A short digest of this machine: its host name, the kernel's boot id
    and the visible GPUs' UUIDs. Two loads with the same digest ran on the
    same GPUs without a reboot between them; a paired round is only fair
    when both its arms ran on one machine."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout
        parts += sorted(u.strip() for u in out.splitlines() if u.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:10]
