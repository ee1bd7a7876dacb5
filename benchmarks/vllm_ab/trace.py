"""Align time per engine step, from the torch-profiler traces of vLLM's workers.

A worker's trace holds vLLM's per-step annotation (``execute_*``, on the CPU
and its copy on the GPU), the CUDA launches and the GPU kernels. Each GPU
event is attributed to an engine step, and the align calls inside it
(``attribution``: the plugin's kernels, or vLLM's op with the fills and the
expert-map gather its function launches) are summed per step.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .attribution import GPU_CATS, LAUNCH_CATS, align_owners, kernel_roles, op_roles

MOE_GEMM_RE = re.compile(r"fused_moe_kernel")
# vLLM's per-step annotation (gpu_worker.annotate_profile), both of its forms:
#   execute_context_2(300)_generation_30(30)
#   execute_330_context_2(sq300sk300sqsq...)_generation_30(sq30sk...)
STEP_RE = re.compile(
    r"^execute_(?:\d+_)?context_(\d+)\((?:sq)?(\d+)[^)]*\)_generation_(\d+)\((?:sq)?(\d+)")


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
    # every GPU event of the step by name: [launches, us]
    kernels: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class TraceSummary:
    """The align calls of one worker's trace, per engine step."""

    path: str
    steps: list[Step] = field(default_factory=list)
    align_kernels: dict[str, int] = field(default_factory=dict)  # "plugin"/"vllm" -> op kernels
    align_names: list[str] = field(default_factory=list)
    # kernels counted in vLLM's align calls besides its op's (fills, the
    # expert-map gather), by name
    align_helpers: dict[str, int] = field(default_factory=dict)
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

    def kernel_table(self, kind: str) -> dict[str, list[float]]:
        """Per kernel name, [launches, us] per step of ``kind`` (means)."""
        return mean_tables([s.kernels for s in self.steps if s.kind == kind])


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
    """Attributes every GPU event (kernels, memsets) of a worker trace to an
    engine step and sums per step: the align calls of either side
    (``attribution.align_owners``), all GPU time, the fused-MoE GEMM launches.

    A GPU event belongs to the step whose CPU ``execute_*`` annotation (same
    process; a worker runs one step at a time) encloses the CPU launch with the
    event's correlation id (CUDA-graph replays included: their kernels carry the
    graph launch's id). Traces without launch events fall back to the GPU-side
    copy of the annotation (``gpu_user_annotation``) enclosing the event's start."""
    events = [e for e in load_trace(path) if e.get("ph") == "X"]
    summary = TraceSummary(path=str(path))
    cpu_steps, gpu_steps = _Intervals(), _Intervals()
    launches: dict[int, tuple[Any, float]] = {}
    gpu = []
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
        elif cat in GPU_CATS:
            gpu.append(e)
    cpu_steps.freeze()
    gpu_steps.freeze()
    if not launches:
        summary.attribution = "gpu_annotation"
        summary.steps = gpu_steps.all()
    roles = kernel_roles(gpu, op_roles(events))
    owners = align_owners(gpu, roles)
    names: set[str] = set()
    for k, role, owner in zip(gpu, roles, owners):
        name = k.get("name", "")
        ts, dur = float(k.get("ts", 0.0)), float(k.get("dur", 0.0))
        corr = (k.get("args") or {}).get("correlation")
        step = None
        if summary.attribution == "launch" and corr is not None and int(corr) in launches:
            key, launch_ts = launches[int(corr)]
            step = cpu_steps.find(key, launch_ts)
        elif summary.attribution == "gpu_annotation":
            step = gpu_steps.find(k.get("pid"), ts)
        if role.kind in ("plugin", "vllm"):
            summary.align_kernels[role.kind] = summary.align_kernels.get(role.kind, 0) + 1
            names.add(name)
        elif owner is not None:
            summary.align_helpers[name] = summary.align_helpers.get(name, 0) + 1
        if step is None:
            if owner is not None:
                summary.unattributed_align_us += dur
            continue
        step.kernel_us += dur
        tally = step.kernels.setdefault(name, [0, 0.0])
        tally[0] += 1
        tally[1] += dur
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
    """Per-step align time, GPU time and launches of the prefill-only,
    decode-only and mixed steps, averaged over the workers (each worker runs
    the align of its own MoE layers' shard); keys ``<kind>_<quantity>``."""
    out: dict[str, Any] = {"workers": len(traces)}
    for kind in ("prefill", "decode", "mixed"):
        per = [t.per_step(kind) for t in traces]
        per = [p for p in per if p]
        if not per:
            continue
        for key in ("align_us", "kernel_us", "align_launches", "moe_gemm_launches", "tokens"):
            out[f"{kind}_{key}"] = statistics.mean(p[key] for p in per)
        out[f"{kind}_steps"] = min(int(p["steps"]) for p in per)
        out[f"{kind}_kernel_table"] = mean_tables([t.kernel_table(kind) for t in traces if t.per_step(kind)])
    kernels: dict[str, int] = {}
    helpers: dict[str, int] = {}
    for t in traces:
        for owner, n in t.align_kernels.items():
            kernels[owner] = kernels.get(owner, 0) + n
        for name, n in t.align_helpers.items():
            helpers[name] = helpers.get(name, 0) + n
    out["align_kernels"] = kernels
    out["align_names"] = sorted({n for t in traces for n in t.align_names})
    out["align_helpers"] = helpers
    out["unattributed_align_us"] = sum(t.unattributed_align_us for t in traces)
    out["attribution"] = ",".join(sorted({t.attribution for t in traces}))
    return out


def mean_tables(tables: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """The mean of kernel tables ([launches, us] by name; per step or per
    worker), a kernel missing from one counting 0 there; {} for none."""
    out: dict[str, list[float]] = {}
    for table in tables:
        for name, (launches, us) in table.items():
            row = out.setdefault(name, [0.0, 0.0])
            row[0] += launches / len(tables)
            row[1] += us / len(tables)
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
