"""What the harness does with a running server: loads, warm-up, checks, profiles.

- ``run_load``: one ``vllm bench serve`` load through the run's
  ``client.BenchClient``, its output to a log file, its result JSON read
  into a ``results.JobRecord`` with the GPUs' state over the load
  (``gpu_state``), how busy the server's and the client's processes were
  (``host_load``) and what the engine measured (``engine_metrics``).
- ``warm_up``: every concurrency level once with short outputs, not
  recorded (Triton's JIT compiles the fused-MoE kernels per batch-size
  bucket at first use; CUDA graphs and torch.compile are ready at start-up).
- ``check_server``: the greedy request, the plugin-line check
  (``checks``) and the compiled graph (``compiled``).
- ``profile_server``: per concurrency one short load between
  ``/start_profile`` and ``/stop_profile``, its traces summarized
  (``profiling``).
"""

from __future__ import annotations

import json
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from benchmarks.vllm_ab import trace

from . import checks, compiled, engine_metrics, gpu_state, host_load, profiling, results
from .client import BenchClient
from .commands import BenchSpec
from .server import Server


@dataclass(frozen=True)
class Load:
    """A load's shape: requests, lengths, concurrency, seed."""

    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    seed: int


def run_load(server: Server, load: Load, result_file: Path, client: BenchClient, timeout: float,
             record: results.JobRecord, gpu: Optional[gpu_state.Reader] = None) -> results.JobRecord:
    """Runs one ``vllm bench serve`` against ``server``; fills ``record``
    (``ok`` False with ``error`` set when it failed), with the GPUs' clocks
    and temperature over the load where ``gpu`` reads them. Its output goes to
    ``result_file`` with suffix ``.log``."""
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    spec = BenchSpec(server.spec, load.concurrency, load.num_prompts, load.input_len,
                     load.output_len, load.seed, result_file,
                     (("ab_arm", record.arm), ("ab_round", str(record.round)),
                      ("ab_server", server.tag)))
    log_path = result_file.with_suffix(".log")
    record.started = time.time()
    groups = {"server": server.proc.pid if server.proc else None, "client": client.running()}
    engine_before = engine_metrics.scrape(server.spec.url)
    with gpu_state.Sampler(gpu) as sampler, host_load.Sampler(groups) as host:
        code = client.run(spec, log_path, timeout)
    engine_after = (engine_metrics.settle(lambda: engine_metrics.scrape(server.spec.url), engine_before,
                                          load.num_prompts * load.output_len)
                    if engine_before is not None and code == 0 else None)
    engine = engine_metrics.window(engine_before, engine_after)
    for name, value in {**sampler.summary(), **host.summary(), **engine}.items():
        setattr(record, name, value)
    record.result_file = str(result_file)
    if code != 0 or not result_file.exists():
        # the client's own error where it gave one, else the end of its log
        tail = log_path.read_text(errors="replace").splitlines()[-5:] if log_path.exists() else []
        why = client.last_error or "wrote no result: " + " | ".join(tail)
        record.ok, record.error = False, f"vllm bench serve: {why} (log {log_path.name})"
        return record
    try:
        return results.fill(record, results.read_result(result_file), load.num_prompts, load.output_len)
    except (ValueError, OSError) as exc:
        record.ok, record.error = False, f"unreadable result: {exc}"
        return record


def warm_up(server: Server, loads: list[Load], log_dir: Path, client: BenchClient,
            timeout: float) -> list[str]:
    """One short load per concurrency level; returns problems (failed loads)."""
    problems = []
    for load in loads:
        rec = results.JobRecord(model=server.spec.model, round=0, arm=server.spec.arm,
                                concurrency=load.concurrency, num_prompts=load.num_prompts,
                                seed=load.seed, server=server.tag)
        path = log_dir / f"warmup-{server.tag}-c{load.concurrency}.json"
        rec = run_load(server, load, path, client, timeout, rec)
        if not rec.ok:
            problems.append(f"{server.tag}: warm-up at concurrency {load.concurrency}: {rec.error}")
    return problems


def check_server(server: Server, expect: str, greedy: checks.GreedySpec, vocab_size: int,
                 reference: Optional[Any], graph_reference: Optional[str],
                 log_dir: Path, dependent_launch: bool = False) -> checks.ServerCheck:
    """Greedy tokens (compared with ``reference`` when given), the plugin
    line as arm ``expect`` should log it (saying programmatic dependent
    launch is on when ``dependent_launch``), and the compiled graph (compared
    with ``graph_reference``) of ``server``; the tokens go to
    ``greedy-<tag>.json``, the graph to ``graph-<tag>.py``."""
    result = checks.ServerCheck(server.tag, server.spec.arm, ready_s=server.ready_s)
    prompts = greedy.token_prompts(vocab_size)
    try:
        answer = server.post("/v1/completions", checks.completion_payload(
            server.spec.model, prompts, greedy.max_tokens), timeout=600.0)
        result.tokens = checks.tokens_from_response(answer, len(prompts))
        (log_dir / f"greedy-{server.tag}.json").write_text(json.dumps(result.tokens))
        if reference is not None:
            result.token_problem = checks.compare_tokens(reference, result.tokens)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        result.token_problem = f"greedy request failed: {exc}"
    log_text = server.log_text()
    result.processes, result.plugin_problems = checks.plugin_check(
        log_text, expect, server.spec.tp, server.spec.dp, dependent_launch)
    info = compiled.read(log_text)
    compiled.keep_graphs(info, log_dir, server.tag)
    result.graph, result.capture_sizes = info.graph, info.capture_sizes
    result.max_num_batched_tokens = info.max_num_batched_tokens
    result.compile_cache = info.cache
    result.graph_problem = compiled.compare(graph_reference, info.graph)
    return result


def profile_server(server: Server, expect: str, loads: list[Load], dest: Path, log_dir: Path,
                   client: BenchClient, timeout: float) -> tuple[list[dict[str, Any]], list[str]]:
    """One profiled load per entry of ``loads``; (profile rows, problems);
    the align kernels must be those of arm ``expect``, and each of the
    server's GPU processes (tp x dp) writes one trace."""
    ranks = server.spec.tp * server.spec.dp
    assert server.spec.profile_dir is not None, "server started without a profiler"
    rows, problems = [], []
    for load in loads:
        c = load.concurrency
        # every server writes into one folder (a path of vLLM's config: one
        # path keeps the compile cache shared); leave nothing of an earlier bracket
        for stale in trace.find_traces(server.spec.profile_dir):
            stale.unlink()
        try:
            server.post("/start_profile", {}, timeout=300.0)
        except (urllib.error.URLError, OSError) as exc:
            problems.append(f"{server.tag}: /start_profile failed: {exc}")
            break
        rec = results.JobRecord(model=server.spec.model, round=0, arm=server.spec.arm,
                                concurrency=c, num_prompts=load.num_prompts, seed=load.seed,
                                server=server.tag)
        rec = run_load(server, load, log_dir / f"profile-{server.tag}-c{c}.json", client, timeout, rec)
        try:
            server.post("/stop_profile", {}, timeout=900.0)
        except (urllib.error.URLError, OSError) as exc:
            problems.append(f"{server.tag}: /stop_profile failed: {exc}")
            break
        if not rec.ok:
            problems.append(f"{server.tag}: profiled load at concurrency {c}: {rec.error}")
        t0 = time.monotonic()
        paths = profiling.collect(server.spec.profile_dir, dest / f"c{c}", expected=ranks)
        summary, workers = profiling.summarize(paths)
        profiling.write_detail(log_dir / f"profile-{server.tag}-c{c}.traces.json", summary, workers)
        found = [f"{server.tag} c={c}: {p}" for p in trace.check_kernels(summary, expect)]
        if len(paths) < ranks:
            found.append(f"{server.tag} c={c}: {len(paths)} trace files, expected {ranks} "
                         f"(waited {time.monotonic() - t0:.0f} s)")
        problems += found
        rows.append(profiling.profile_row(server.spec.model, server.spec.arm, c, summary, found))
    return rows, problems
