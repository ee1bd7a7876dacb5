"""What one ``vllm bench serve`` run measured: its result JSON, read.

``vllm bench serve --save-result --result-filename F`` writes one JSON object
(vLLM 0.26.0 and 0.33.0 alike): the run's setup (``backend``, ``model_id``,
``num_prompts``, ``max_concurrency``, ``request_rate``, ...), any
``--metadata KEY=VALUE`` pairs as top-level keys, and the results:
``duration`` (s), ``completed``, ``failed``, ``total_input_tokens``,
``total_output_tokens``, ``request_throughput``, ``output_throughput``
(output tokens/s over the run), ``total_token_throughput``, and per metric of
``--percentile-metrics`` ``mean_<m>_ms``, ``median_<m>_ms``, ``std_<m>_ms``
and ``p<P>_<m>_ms`` for each of ``--metric-percentiles`` (``p50``, ``p99``,
``p99.9``...). TTFT and TPOT come only with a tokenizer (always here). TPOT
per request is (latency - TTFT) / (output tokens - 1); vLLM's mean and median
are over requests. ``failed`` is missing in some older lines (then
``num_prompts - completed``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

# (record field, result key) read from every result
FIELDS = (
    ("output_tok_s", "output_throughput"), ("total_tok_s", "total_token_throughput"),
    ("request_s", "request_throughput"), ("duration_s", "duration"),
    ("completed", "completed"), ("failed", "failed"),
    ("input_tokens", "total_input_tokens"), ("output_tokens", "total_output_tokens"),
    ("median_ttft_ms", "median_ttft_ms"), ("mean_ttft_ms", "mean_ttft_ms"),
    ("p99_ttft_ms", "p99_ttft_ms"), ("median_tpot_ms", "median_tpot_ms"),
    ("mean_tpot_ms", "mean_tpot_ms"), ("p99_tpot_ms", "p99_tpot_ms"),
    ("median_itl_ms", "median_itl_ms"), ("median_e2el_ms", "median_e2el_ms"),
)
# the metrics the A/B report is about: (record field, label, higher is better). TTFT comes
# twice: with few requests per load their TTFTs fall on a few queue positions (a request waits
# for 0, 1, 2... prefill chunks of others), so the median jumps by whole chunk times when one
# request changes place; the mean moves with every request. ITL (median): the median gap
# between two streamed tokens over all requests, i.e. a decode step with no prefill chunk in it;
# each request's TPOT averages the chunks that stalled it in, so at loads that mix prefill into
# decode TPOT varies several times more between rounds than the decode step does. Engine ITL
# (mean): the same gaps on the engine core's clock (engine_metrics), without the time the API
# server and the client took to hand each token on; the server measures it, runs without it
# leave it empty
METRICS = (("output_tok_s", "output tok/s", True), ("median_ttft_ms", "TTFT ms (median)", False),
           ("mean_ttft_ms", "TTFT ms (mean)", False), ("median_tpot_ms", "TPOT ms (median)", False),
           ("median_itl_ms", "ITL ms (median)", False),
           ("engine_itl_mean_ms", "engine ITL ms (mean)", False))


@dataclass
class JobRecord:
    """One measured load on one server: its place in the run and what
    ``vllm bench serve`` reported (None where the run failed)."""

    model: str
    round: int
    arm: str
    concurrency: int
    num_prompts: int
    seed: int
    server: str  # the server start's tag (its log file's name)
    started: Optional[float] = None  # Unix time the load started
    machine: Optional[str] = None  # environment.machine_id() of the machine it ran on
    ok: bool = False
    error: Optional[str] = None
    result_file: Optional[str] = None
    output_tok_s: Optional[float] = None
    total_tok_s: Optional[float] = None
    request_s: Optional[float] = None
    duration_s: Optional[float] = None
    completed: Optional[int] = None
    failed: Optional[int] = None
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    median_ttft_ms: Optional[float] = None
    mean_ttft_ms: Optional[float] = None
    p99_ttft_ms: Optional[float] = None
    median_tpot_ms: Optional[float] = None
    mean_tpot_ms: Optional[float] = None
    p99_tpot_ms: Optional[float] = None
    median_itl_ms: Optional[float] = None
    median_e2el_ms: Optional[float] = None
    # the GPUs during the load (gpu_state.summary)
    sm_mhz_min: Optional[float] = None
    sm_mhz_median: Optional[float] = None
    power_w_max: Optional[float] = None
    temp_c_max: Optional[float] = None
    clock_reasons: Optional[int] = None
    gpu_busy_median: Optional[float] = None  # percent of time a kernel ran (NVML)
    # the host during the load (host_load.summary): the busiest process's share of one core
    server_cpu_top: Optional[float] = None
    client_cpu_top: Optional[float] = None
    # what vLLM's engine measured over the load, on the engine core's clock (engine_metrics.window)
    engine_itl_mean_ms: Optional[float] = None
    engine_itl_fast_share: Optional[float] = None
    engine_steps: Optional[float] = None
    preemptions: Optional[float] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def read_result(path: Path) -> dict[str, Any]:
    """The result JSON of ``vllm bench serve`` (with ``--append-result`` the
    file holds one object per line: the last one counts)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty result file")
    data = json.loads(lines[-1])
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def problems(result: dict[str, Any], expected_prompts: int, output_len: int) -> list[str]:
    """Why a result does not count (empty: it does): requests failed or
    missing, output tokens short of ``expected_prompts * output_len``
    (EOS is ignored, so every request generates exactly output_len), no
    TTFT/TPOT (a client without tokenizer)."""
    out = []
    completed = int(result.get("completed", 0))
    failed = result.get("failed")
    failed = expected_prompts - completed if failed is None else int(failed)
    if completed != expected_prompts or failed:
        out.append(f"{completed} of {expected_prompts} requests completed, {failed} failed")
    tokens = result.get("total_output_tokens")
    if tokens is not None and int(tokens) < expected_prompts * output_len:
        out.append(f"{tokens} output tokens, expected {expected_prompts * output_len}")
    for key in ("output_throughput", "median_ttft_ms", "median_tpot_ms"):
        if not isinstance(result.get(key), (int, float)):
            out.append(f"no {key} in the result")
    return out


def fill(record: JobRecord, result: dict[str, Any], expected_prompts: int, output_len: int) -> JobRecord:
    """Copies the result's numbers into ``record``; ``ok`` when nothing in
    ``problems`` applies, else ``error`` says why."""
    for name, key in FIELDS:
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(record, name, value)
    if record.failed is None and record.completed is not None:
        record.failed = expected_prompts - record.completed
    issues = problems(result, expected_prompts, output_len)
    record.ok = not issues
    record.error = "; ".join(issues) or None
    return record


def load_records(path: Path) -> list[JobRecord]:
    """The records of a ``rounds.jsonl`` file (one JSON object a line; a
    line cut short by a stopped run is skipped)."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(JobRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError):
            continue
    return out
