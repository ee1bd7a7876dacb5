"""One offline run, in a process of its own (``python -m benchmarks.vllm_ab.offline
--child SPEC``): ``vllm.LLM(...)``, a warm-up ``generate``, ``repeats`` timed
pairs of ``generate`` calls (``max_tokens=1``, then ``max_tokens``), then one
``generate`` under vLLM's torch profiler. Its result goes to a JSON file."""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from benchmarks.vllm_ab.environment import engine_args
from benchmarks.vllm_ab.models import MODELS, make_prompts

RESULT_TAG = "E2E-RESULT "  # the child's last output line: its result without the tokens


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
    """Arguments of ``vllm.LLM`` for ``spec``: the shared engine settings
    (``environment.engine_args``), a token budget that holds the whole batch
    (one prefill step), and the per-request metrics on (vLLM fills
    ``RequestOutput.metrics`` only with stats)."""
    kwargs = engine_args(
        model_dir=spec.model_dir, tp=spec.tp, ep=spec.ep, enforce_eager=spec.enforce_eager,
        seed=spec.seed, max_num_seqs=spec.num_prompts, max_len=spec.max_prompt + spec.max_tokens,
        max_num_batched_tokens=max(16384, spec.num_prompts * spec.max_prompt),
        kv_cache_gib=spec.kv_cache_gib, custom_all_reduce=spec.custom_all_reduce,
        trace_dir=spec.trace_dir if spec.profile else None)
    kwargs["disable_log_stats"] = False
    return kwargs


def metrics_times(outputs: list[Any]) -> tuple[Optional[float], Optional[float]]:
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
        p, d = metrics_times(outs)
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


def main(spec_path: Path) -> int:
    """The child's entry: runs the spec in ``spec_path``, prints its result line."""
    result = run_child(RunSpec(**json.loads(spec_path.read_text())))
    print(RESULT_TAG + json.dumps({k: v for k, v in result.items() if k != "tokens"}), flush=True)
    return 0
