"""The profiled loads: the align step's GPU time per engine step, per arm.

A server started with ``--profiler-config`` (``commands.profiler_config``)
writes one torch-profiler trace per worker each time ``POST /start_profile``
... ``POST /stop_profile`` brackets some work. Per concurrency level the
harness runs a short ``vllm bench serve`` load inside such a bracket, then
moves that bracket's traces from the server's profiler directory into a
folder of their own and reads them with ``benchmarks.vllm_ab.trace``: per engine
step (vLLM's ``execute_*`` annotation) the GPU time of the align calls
(``benchmarks.vllm_ab.attribution``: the plugin's kernels, or vLLM's op kernels
with the fills and the expert-map gather its function launches), for
prefill-only, decode-only and mixed steps (chunked prefill puts prefill and
decode into one step), every kernel's launches and GPU time per step of each
kind (so two arms' decode steps can be compared kernel by kernel), and which
align kernels ran at all (``trace.check_kernels``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.vllm_ab import trace

STEP_KINDS = ("prefill", "decode", "mixed")


def wait_for_traces(trace_dir: Path, expected: int, timeout: float = 300.0,
                    settle: float = 3.0) -> list[Path]:
    """The trace files directly in ``trace_dir`` once at least ``expected``
    exist and none changed size for ``settle`` seconds (or ``timeout``
    passed: whatever is there then)."""
    deadline = time.monotonic() + timeout
    last: dict[Path, int] = {}
    stable_since = time.monotonic()
    while True:
        files = [p for p in trace.find_traces(trace_dir) if p.parent == trace_dir]
        sizes = {p: p.stat().st_size for p in files if p.exists()}
        if sizes != last:
            last, stable_since = sizes, time.monotonic()
        if len(sizes) >= expected and time.monotonic() - stable_since >= settle:
            return sorted(sizes)
        if time.monotonic() > deadline:
            return sorted(sizes)
        time.sleep(0.5)


def collect(trace_dir: Path, dest: Path, expected: int, timeout: float = 300.0) -> list[Path]:
    """Moves the finished traces of one bracket from the server's profiler
    directory ``trace_dir`` into ``dest``; returns their new paths."""
    dest.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in wait_for_traces(trace_dir, expected, timeout):
        target = dest / path.name
        shutil.move(str(path), target)
        moved.append(target)
    return moved


def summarize(paths: list[Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary over the workers, per-worker detail) of one bracket's traces:
    ``trace.summarize_traces`` plus the mixed steps' means."""
    summaries = [trace.analyze_trace(p) for p in paths]
    summary = trace.summarize_traces(summaries)
    workers = []
    for s in summaries:
        per = {kind: s.per_step(kind) for kind in STEP_KINDS}
        workers.append({"path": s.path, "attribution": s.attribution, **per,
                        "align_kernels": s.align_kernels, "align_helpers": s.align_helpers})
    return summary, workers


def profile_row(model: str, arm: str, concurrency: int, summary: dict[str, Any],
                problems: list[str]) -> dict[str, Any]:
    """One row of the report's profile table."""
    row: dict[str, Any] = {"model": model, "arm": arm, "concurrency": concurrency,
                           "workers": summary.get("workers", 0)}
    for kind in STEP_KINDS:
        align, kernel = summary.get(f"{kind}_align_us"), summary.get(f"{kind}_kernel_us")
        row[f"{kind}_steps"] = summary.get(f"{kind}_steps")
        row[f"{kind}_align_us"] = align
        row[f"{kind}_align_launches"] = summary.get(f"{kind}_align_launches")
        row[f"{kind}_kernel_table"] = summary.get(f"{kind}_kernel_table") or {}
        row[f"{kind}_tokens"] = summary.get(f"{kind}_tokens")
        row[f"{kind}_align_share"] = align / kernel if align is not None and kernel else None
    row["align_kernels"] = ",".join(f"{k}:{v}" for k, v in sorted(summary.get("align_kernels", {}).items()))
    row["problems"] = "; ".join(problems)
    return row


def write_detail(path: Path, summary: dict[str, Any], workers: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"summary": summary, "workers": workers}, indent=1))
