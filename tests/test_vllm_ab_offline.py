"""The CPU-side parts of the A/B harness's offline load
(benchmarks/vllm_ab/offline/) and of its shared modules: model configs,
prompts, LLM arguments, the child environment, the plugin-log check,
the align attribution and the trace parser (on synthetic torch-profiler
traces), the report files, and the driver against a stand-in vLLM. The GPU
runs themselves need vLLM and GPUs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from fake_trace import TraceBuilder

from benchmarks.vllm_ab import attribution, environment, logs, models, trace
from benchmarks.vllm_ab.offline import child, report
from benchmarks.vllm_ab.offline import driver as offline
from benchmarks.vllm_ab.report import write_csv

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_KERNEL = "void vllm_moe_align::(anonymous namespace)::tiny_kernel<int>(int const*, Params)"
VLLM_KERNEL = "void vllm::moe::moe_align_block_size_kernel<int>(int const*, int*, int*, int*, int)"
VLLM_SORT = "void vllm::moe::count_and_sort_expert_tokens_kernel<int>(int const*, int*, int*)"
GEMM = "fused_moe_kernel"
OTHER = "void at::native::elementwise_kernel<128, 2>(int, ...)"
# what torch launches for expert_map[expert_ids] (int32 index: cast to int64, then gather)
CAST = ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda("
        "at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda(int)#1}, "
        "std::array<char*, 2ul>, 4>(int, ...)")
GATHER = ("void at::native::index_elementwise_kernel<128, 4, at::native::gpu_index_kernel<"
          "at::native::index_kernel_impl<at::native::OpaqueType<4> >(...)::{lambda(int)#1}>(long, ...)")
FILL = ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<int>, "
        "std::array<char*, 1ul> >(int, at::native::FillFunctor<int>, std::array<char*, 1ul>)")


def _worker_trace(align: str, *, layers: int = 2, decode_steps: int = 3) -> TraceBuilder:
    """One prefill step and ``decode_steps`` decode steps (the last two
    replayed from a CUDA graph), ``layers`` MoE layers each: per layer one or
    two align kernels, two fused-MoE GEMMs, one other kernel."""
    t = TraceBuilder()
    align_names = [PLUGIN_KERNEL] if align == "plugin" else [VLLM_KERNEL, VLLM_SORT]
    t.step("execute_context_4(1000)_generation_0(0)", 0.0, 1000.0)
    x = 10.0
    for _ in range(layers):
        for name in align_names:
            t.kernel(name, x, 10.0)
            x += 20
        t.kernel(GEMM, x, 100.0)
        t.kernel(GEMM, x + 20, 100.0)
        t.kernel(OTHER, x + 40, 50.0)
        x += 60
    t.kernel(PLUGIN_KERNEL if align == "plugin" else VLLM_KERNEL, 1500.0, 9.0)  # outside any step
    for s in range(decode_steps):
        start = 2000.0 + 1000.0 * s
        t.step("execute_330_context_0(sq0sk0sqsq0sqsk0)_generation_4(sq4sk1004sqsq4sqsk4016)",
               start, 500.0)
        graph = t.graph_launch(start + 5) if s >= 1 else None
        x = start + 10
        for _ in range(layers):
            for name in align_names:
                t.kernel(name, x, 2.0, graph_corr=graph)
                x += 10
            t.kernel(GEMM, x, 20.0, graph_corr=graph)
            t.kernel(GEMM, x + 10, 20.0, graph_corr=graph, cat="cuda_driver")
            x += 20
    return t


def test_models_and_configs(tmp_path: Path) -> None:
    for name, cfg in models.MODELS.items():
        d = models.write_model(name, tmp_path / name)
        written = json.loads((d / "config.json").read_text())
        assert written == cfg
        assert written["torch_dtype"] == "bfloat16" and 2 <= written["num_hidden_layers"] <= 4
        assert 512 <= written["hidden_size"] <= 1024 and 8192 <= written["vocab_size"] <= 32000
    q, m = models.MODELS["qwen3moe"], models.MODELS["mixtral"]
    assert (q["num_experts"], q["num_experts_per_tok"]) == (128, 8)
    assert (m["num_local_experts"], m["num_experts_per_tok"]) == (8, 2)


def test_configs_load_with_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    for name, cfg in models.MODELS.items():
        d = models.write_model(name, tmp_path / name)
        loaded = transformers.AutoConfig.from_pretrained(str(d))
        assert loaded.model_type == cfg["model_type"]
        assert loaded.num_experts_per_tok == cfg["num_experts_per_tok"]
        assert loaded.hidden_size == cfg["hidden_size"]


def test_prompts_deterministic_and_in_range() -> None:
    a = models.make_prompts(32, 128, 512, 16384, seed=0)
    assert a == models.make_prompts(32, 128, 512, 16384, seed=0)
    assert a != models.make_prompts(32, 128, 512, 16384, seed=1)
    lengths = sorted(len(p) for p in a)
    assert lengths[0] == 128 and lengths[-1] == 512 and len(a) == 32
    assert all(16 <= t < 16384 - 16 for p in a for t in p)
    assert [len(p) for p in models.make_prompts(1, 7, 9, 100, 0)] == [7]


def test_llm_kwargs() -> None:
    spec = child.RunSpec(model="qwen3moe", model_dir="/m", variant="plugin", tp=2, ep=True,
                       enforce_eager=False, trace_dir="/t")
    kw = child.llm_kwargs(spec)
    assert kw["load_format"] == "dummy" and kw["skip_tokenizer_init"] is True
    assert kw["tensor_parallel_size"] == 2 and kw["enable_expert_parallel"] is True
    assert kw["attention_config"] == {"backend": "TRITON_ATTN"} and kw["moe_backend"] == "triton"
    assert kw["enable_prefix_caching"] is False and kw["disable_log_stats"] is False
    assert kw["max_num_batched_tokens"] >= spec.num_prompts * spec.max_prompt  # one prefill step
    assert kw["max_model_len"] >= spec.max_prompt + spec.max_tokens
    assert kw["profiler_config"]["profiler"] == "torch"
    assert kw["profiler_config"]["torch_profiler_dir"] == "/t"
    assert 32 in kw["compilation_config"]["cudagraph_capture_sizes"]
    eager = child.llm_kwargs(child.RunSpec(model="mixtral", model_dir="/m", variant="vllm", profile=False))
    assert "compilation_config" not in eager and "profiler_config" not in eager
    assert eager["enforce_eager"] is True


def test_llm_kwargs_are_engine_args() -> None:
    """Every key is an EngineArgs field of the installed vLLM (checked against
    0.26.0 by hand; CI has another release)."""
    arg_utils = pytest.importorskip("vllm.engine.arg_utils")
    import dataclasses

    fields = {f.name for f in dataclasses.fields(arg_utils.EngineArgs)}
    spec = child.RunSpec(model="qwen3moe", model_dir="/m", variant="plugin", enforce_eager=False,
                       trace_dir="/t")
    assert set(child.llm_kwargs(spec)) - fields == set()


def test_child_env() -> None:
    base = {"PATH": "/bin", "VLLM_MOE_ALIGN_DISABLE": "1", "VLLM_PLUGINS": "x", "VLLM_MOE_ALIGN_PDL": "1"}
    off, on = environment.child_env(base, "vllm"), environment.child_env(base, "plugin")
    assert off["VLLM_PLUGINS"] == "" and on["VLLM_PLUGINS"] == "moe_align"
    for env in (off, on):
        assert "VLLM_MOE_ALIGN_DISABLE" not in env and "VLLM_MOE_ALIGN_PDL" not in env
        assert env["PATH"] == "/bin" and env["RAY_DEDUP_LOGS"] == "0"
        assert env["NCCL_NVLS_ENABLE"] == "0" and env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
        assert env["NVSHMEM_DISABLE_NVLS"] == "1" and env["VLLM_ALLREDUCE_USE_SYMM_MEM"] == "0"
        assert env["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
        assert env["VLLM_LOGGING_PREFIX"] % {"process": 12} == "[pid=12] "
    assert base["VLLM_PLUGINS"] == "x"  # not modified


def _log(pids: list[int], plugin: list[int], warn: int | None = None) -> str:
    lines = ["unprefixed line of the driver before logging is set up"]
    for pid in pids:
        lines.append(f"(EngineCore pid={pid}) [pid={pid}] INFO 11-26 19:14:27 [core.py:1] starting")
    for pid in plugin:
        lines.append(f"[pid={pid}] INFO 11-26 19:14:27 [runtime.py:125] vllm-moe-align-plugin "
                     "0.1.0 on for vLLM 0.26.0 (vllm 0.17-0.30 contract): ...")
    if warn is not None:
        lines.append(f"[pid={warn}] WARNING 11-26 19:14:27 [runtime.py:83] vllm-moe-align-plugin "
                     "not enabled (ImportError: x)")
    return "\n".join(lines)


def test_plugin_log_check() -> None:
    ok = logs.parse_plugin_log(_log([1, 2, 3, 4], [1, 2, 3, 4]))
    assert ok.summary == "4/4" and logs.check_plugin_log(ok, "plugin", tp=2) == []
    missing = logs.parse_plugin_log(_log([1, 2, 3, 4], [1, 2, 4]))
    assert missing.summary == "3/4"
    assert any("process 3: 0 plugin lines" in p for p in logs.check_plugin_log(missing, "plugin", 2))
    twice = logs.parse_plugin_log(_log([1, 2], [1, 2, 2]))
    assert any("2 plugin lines" in p for p in logs.check_plugin_log(twice, "plugin", 1))
    few = logs.parse_plugin_log(_log([1, 2], [1, 2]))
    assert any("expected at least 4" in p for p in logs.check_plugin_log(few, "plugin", 2))
    warned = logs.parse_plugin_log(_log([1, 2], [1], warn=2))
    assert any("plugin warning" in p for p in logs.check_plugin_log(warned, "plugin", 1))
    base = logs.parse_plugin_log(_log([1, 2], []))
    assert logs.check_plugin_log(base, "vllm", 1) == []
    assert logs.check_plugin_log(logs.parse_plugin_log(_log([1, 2], [2])), "vllm", 1)
    assert logs.expected_processes(1) == 2 and logs.expected_processes(2) == 4


def test_classify_step() -> None:
    assert trace.classify_step("execute_context_32(10240)_generation_0(0)") == "prefill"
    assert trace.classify_step("execute_context_0(0)_generation_32(32)") == "decode"
    assert trace.classify_step("execute_context_2(100)_generation_30(30)") == "mixed"
    assert trace.classify_step("execute_330_context_0(sq0sk0sqsq0sqsk0)_generation_4(sq4sk9)") == "decode"
    assert trace.classify_step("execute_10_context_1(sq10sk10sqsq100sqsk100)_generation_0(sq0)") == "prefill"
    assert trace.classify_step("capture_32_FULL") is None
    assert trace.step_tokens("execute_context_32(10240)_generation_0(0)") == 10240
    assert trace.step_tokens("execute_context_2(100)_generation_30(30)") == 130
    assert trace.step_tokens("execute_10_context_1(sq10sk10sqsq100sqsk100)_generation_0(sq0)") == 10
    assert trace.step_tokens("capture_32_FULL") == 0
    assert attribution.align_owner(PLUGIN_KERNEL) == "plugin"
    assert attribution.align_owner(VLLM_KERNEL) == "vllm" and attribution.align_owner(VLLM_SORT) == "vllm"
    assert attribution.align_owner(GEMM) is None and attribution.align_owner(OTHER) is None


@pytest.mark.parametrize("align", ["plugin", "vllm"])
@pytest.mark.parametrize("drop", [(), ("cuda_runtime", "cuda_driver")])
def test_trace_parser(tmp_path: Path, align: str, drop: tuple[str, ...]) -> None:
    """Per-step sums on a synthetic trace, attributed through the launches
    (CUDA-graph replays included) or, without launch events, through the GPU
    copies of the step annotations."""
    path = _worker_trace(align).write(tmp_path / "dp0_pp0_tp0_dcp0_ep0_rank0.123.pt.trace.json.gz",
                                      drop=drop)
    s = trace.analyze_trace(path)
    assert s.attribution == ("launch" if not drop else "gpu_annotation")
    per_align = 1 if align == "plugin" else 2
    prefill, decode = s.per_step("prefill"), s.per_step("decode")
    assert prefill["steps"] == 1 and decode["steps"] == 3
    assert prefill["tokens"] == 1000 and decode["tokens"] == 4
    assert prefill["align_us"] == pytest.approx(2 * per_align * 10.0)
    assert prefill["align_launches"] == 2 * per_align
    assert prefill["moe_gemm_launches"] == 4
    assert prefill["kernel_us"] == pytest.approx(2 * (per_align * 10 + 200 + 50))
    assert decode["align_us"] == pytest.approx(2 * per_align * 2.0)
    assert decode["moe_gemm_launches"] == 4
    assert s.unattributed_align_us == pytest.approx(9.0)
    assert s.align_kernels == {align: 2 * per_align * 4 + 1}
    summary = trace.summarize_traces([s, trace.analyze_trace(path)])
    assert summary["workers"] == 2 and summary["decode_steps"] == 3
    assert summary["decode_align_us"] == pytest.approx(2 * per_align * 2.0)
    assert summary["prefill_tokens"] == 1000 and summary["decode_tokens"] == 4
    assert trace.check_kernels(summary, align) == []
    other = "vllm" if align == "plugin" else "plugin"
    assert trace.check_kernels(summary, other)


def test_trace_parser_plain_json_and_other_threads(tmp_path: Path) -> None:
    """Uncompressed traces; a launch from another thread of the worker
    inside the step's time still counts for that step."""
    t = TraceBuilder()
    t.step("execute_context_1(10)_generation_0(0)", 0.0, 100.0)
    t.kernel(PLUGIN_KERNEL, 10.0, 4.0, tid=999)
    t.kernel(PLUGIN_KERNEL, 200.0, 4.0)  # after the step
    s = trace.analyze_trace(t.write(tmp_path / "w.json"))
    assert s.per_step("prefill")["align_us"] == pytest.approx(4.0)
    assert s.unattributed_align_us == pytest.approx(4.0)
    assert trace.find_traces(tmp_path) == [tmp_path / "w.json"]
    assert trace.check_kernels(trace.summarize_traces([]), "plugin") == ["no trace file found"]


def _owners(names: list[str], stream_of: dict[int, int] | None = None) -> str:
    """align_owners over kernels named ``names`` in this order (stream 7 unless
    ``stream_of`` says otherwise), known by name only: one letter per kernel,
    v (vLLM's call), p (the plugin's), - (neither)."""
    gpu = [{"name": n, "ts": 10.0 * i, "dur": 1.0, "pid": 0, "tid": (stream_of or {}).get(i, 7),
            "cat": "kernel"} for i, n in enumerate(names)]
    owners = attribution.align_owners(gpu, attribution.kernel_roles(gpu, {}))
    return "".join({"vllm": "v", "plugin": "p", None: "-"}[o] for o in owners)


@pytest.mark.parametrize("names,expected", [
    # expert parallel: vLLM's op, then the gather expert_map[expert_ids] (cast, gather)
    ([VLLM_KERNEL, VLLM_SORT, CAST, GATHER, GEMM], "vvvv-"),
    ([VLLM_KERNEL, GATHER, GEMM], "vv-"),
    # without expert_map: the op only
    ([OTHER, VLLM_KERNEL, VLLM_SORT, GEMM, GEMM], "-vv--"),
    # older functions' output fills before the op, the op's scratch fill between its kernels
    ([OTHER, FILL, FILL, VLLM_KERNEL, FILL, VLLM_SORT, GEMM], "-vvvvv-"),
    ([FILL, FILL, FILL, FILL, VLLM_KERNEL], "-vvvv"),  # at most MAX_FILLS_BEFORE
    # anything in between ends the call
    ([VLLM_KERNEL, GEMM, CAST, GATHER], "v---"),
    ([VLLM_KERNEL, OTHER, GATHER], "v--"),
    ([VLLM_KERNEL, FILL, GATHER], "v--"),
    ([FILL, OTHER, VLLM_KERNEL], "--v"),
    # one indexing operation; a cast alone is none
    ([VLLM_KERNEL, GATHER, GATHER], "vv-"),
    ([VLLM_KERNEL, CAST, GATHER, CAST, GATHER], "vvv--"),
    ([VLLM_KERNEL, CAST, GEMM], "v--"),
    # the plugin: its own kernels, never a neighbour
    ([FILL, PLUGIN_KERNEL, CAST, GATHER, PLUGIN_KERNEL, GATHER], "-p--p-"),
])
def test_align_calls_by_name(names: list[str], expected: str) -> None:
    assert attribution.MAX_FILLS_BEFORE == 3
    assert _owners(names) == expected


def test_align_calls_stay_on_their_stream() -> None:
    # a gather of another stream right after in time is not the function's
    assert _owners([VLLM_KERNEL, GATHER, GATHER], stream_of={1: 8}) == "v-v"
    assert _owners([FILL, VLLM_KERNEL], stream_of={0: 3}) == "-v"


def test_roles_from_cpu_operators() -> None:
    """Eager traces: the launching operator decides (nested ones: the align
    op first), whatever the kernel's name; launches outside them: the name."""
    t = TraceBuilder()
    t.cpu_op("_moe_C::moe_align_block_size", 0.0, 50.0)
    t.cpu_op("aten::zeros", 1.0, 5.0)  # the op zero-fills its scratch
    t.kernel("void some_new_scratch_init<int>(int*)", 2.0, 1.0)
    t.kernel("void vllm::moe::some_renamed_align_kernel<int>(...)", 10.0, 1.0)
    t.cpu_op("aten::index", 60.0, 20.0)
    t.kernel(CAST, 62.0, 1.0)
    t.kernel(GATHER, 64.0, 1.0)
    t.cpu_op("aten::fill_", 90.0, 5.0)
    t.kernel("void at::native::vectorized_elementwise_kernel<4, ...>", 91.0, 1.0)
    t.kernel(GATHER, 100.0, 1.0)  # no operator around it
    by_op = attribution.op_roles(t.events)
    gpu = [e for e in t.events if e["cat"] == "kernel"]
    roles = attribution.kernel_roles(gpu, by_op)
    assert [r.kind for r in roles] == ["vllm", "vllm", "index", "index", "fill", "index"]
    assert roles[2].op == roles[3].op is not None and roles[5].op is None
    assert attribution.align_owners(gpu, roles) == ["vllm"] * 4 + [None, None]


def _ep_trace(eager: bool) -> TraceBuilder:
    """Expert parallel, one prefill step, two MoE layers: vLLM's function
    (the op: a scratch zero-fill and two kernels; then expert_map[expert_ids]:
    cast and gather), the GEMMs, then an unrelated gather. ``eager``: launches
    inside CPU operators; else replayed from a CUDA graph (names only)."""
    t = TraceBuilder()
    t.step("execute_context_4(1000)_generation_0(0)", 0.0, 1000.0)
    graph = None if eager else t.graph_launch(5.0)
    x = 10.0
    for _ in range(2):
        if eager:
            t.cpu_op("_moe_C::moe_align_block_size", x - 1, 3 * 12 - 2)
            t.cpu_op("aten::zeros", x - 0.5, 3.0)
        for name, dur in ((FILL, 1.0), (VLLM_KERNEL, 10.0), (VLLM_SORT, 5.0)):
            t.kernel(name, x, dur, graph_corr=graph)
            x += 12
        if eager:
            t.cpu_op("aten::index", x - 1, 2 * 8 - 2)
        for name, dur in ((CAST, 2.0), (GATHER, 3.0)):
            t.kernel(name, x, dur, graph_corr=graph)
            x += 8
        t.kernel(GEMM, x, 100.0, graph_corr=graph)
        x += 110
        if eager:
            t.cpu_op("aten::index", x - 1, 5.0)
        t.kernel(GATHER, x, 4.0, graph_corr=graph)  # after the GEMM: not the align's
        x += 10
    return t


@pytest.mark.parametrize("eager", [True, False])
def test_expert_parallel_counts_the_whole_align_step(tmp_path: Path, eager: bool) -> None:
    s = trace.analyze_trace(_ep_trace(eager).write(tmp_path / "ep.json"))
    prefill = s.per_step("prefill")
    assert prefill["align_us"] == pytest.approx(2 * (1 + 10 + 5 + 2 + 3))
    assert prefill["align_launches"] == 2 * 5
    assert prefill["kernel_us"] == pytest.approx(2 * (1 + 10 + 5 + 2 + 3 + 100 + 4))
    assert s.unattributed_align_us == 0
    helpers = {CAST: 2, GATHER: 2} if eager else {FILL: 2, CAST: 2, GATHER: 2}
    assert s.align_helpers == helpers
    assert s.align_kernels == {"vllm": 6 if eager else 4}
    summary = trace.summarize_traces([s])
    assert summary["align_helpers"] == helpers and trace.check_kernels(summary, "vllm") == []


def test_memsets_are_gpu_time(tmp_path: Path) -> None:
    t = TraceBuilder()
    t.step("execute_context_1(10)_generation_0(0)", 0.0, 100.0)
    t.kernel("Memset (Device)", 5.0, 2.0, gpu_cat="gpu_memset")
    t.kernel(VLLM_KERNEL, 10.0, 4.0)
    t.kernel("Memset (Device)", 20.0, 3.0, gpu_cat="gpu_memset")  # after the op: not its
    prefill = trace.analyze_trace(t.write(tmp_path / "m.json")).per_step("prefill")
    assert prefill["align_us"] == pytest.approx(6.0) and prefill["kernel_us"] == pytest.approx(9.0)


def test_report_files(tmp_path: Path) -> None:
    rows = []
    for model in ("qwen3moe", "mixtral"):
        for variant, align in (("vllm", 40.0), ("plugin", 10.0)):
            result = {"spec": {"model": model, "variant": variant, "tp": 1, "ep": False,
                               "enforce_eager": True, "num_prompts": 32, "max_tokens": 64},
                      "prompt_tokens": 10240, "wall_prefill_ms": 50.0, "wall_decode_ms_per_step": 5.0,
                      "engine_prefill_ms": 45.0, "engine_decode_ms_per_step": 4.5, "init_s": 30.0}
            traces = {"prefill_align_us": align, "prefill_kernel_us": 1000.0,
                      "decode_align_us": align / 4, "decode_kernel_us": 500.0}
            log = logs.parse_plugin_log(_log([1, 2], [1, 2] if variant == "plugin" else []))
            rows.append(report.make_row(result, traces, log, True))
    md = report.markdown(rows, "header")
    assert "| qwen3moe | plugin |" in md and "40.0 -> 10.0 (4.00x)" in md and "4.0%" in md
    write_csv(rows, tmp_path / "r.csv", report.COLUMNS)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].split(",") == list(report.COLUMNS) and len(lines) == 5
    pytest.importorskip("matplotlib")
    assert report.write_png(rows, tmp_path / "r.png", "title")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_parse_args() -> None:
    a = offline.parse_args([])
    assert (a.model, a.tp, a.ep, a.enforce_eager, a.profile) == ("both", 1, False, True, True)
    b = offline.parse_args(["--model", "mixtral", "--tp", "2", "--ep", "--no-enforce-eager",
                        "--no-profile", "--out", "x"])
    assert (b.model, b.tp, b.ep, b.enforce_eager, b.profile, str(b.out)) == \
        ("mixtral", 2, True, False, False, "x")
    with pytest.raises(SystemExit):
        offline.parse_args(["--max-tokens", "1"])
    with pytest.raises(SystemExit):
        offline.parse_args(["--model", "llama"])


# A stand-in for vLLM (a module named ``vllm`` on PYTHONPATH) that behaves like
# an offline run on the outside: a driver and an "engine core" process that
# both log through a logger with VLLM_LOGGING_PREFIX and, when VLLM_PLUGINS
# allows it, the plugin's line; greedy-like token ids; per-request metrics; a
# worker trace written at stop_profile. It lets the offline driver
# (children, process groups, logs, traces, reports, exit status) run on CPU.
FAKE_VLLM = r'''
import gzip, json, logging, os, subprocess, sys, time
from fake_trace import step_trace
__version__ = "0.26.0"
_fmt = (os.environ.get("VLLM_LOGGING_PREFIX", "")
        + "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s")
_h = logging.StreamHandler(sys.stdout)
_h.setFormatter(logging.Formatter(_fmt))
logging.getLogger("vllm").addHandler(_h)
logging.getLogger("vllm").setLevel(logging.INFO)
logging.getLogger("vllm").propagate = False
if "moe_align" in os.environ.get("VLLM_PLUGINS", "moe_align").split(","):
    logging.getLogger("vllm.moe_align_plugin").info(
        "vllm-moe-align-plugin 0.1.0 on for vLLM 0.26.0 (vllm 0.17-0.30 contract): ...")
logging.getLogger("vllm").info("fake vllm %s imported", __version__)
PLUGIN = "moe_align" in os.environ.get("VLLM_PLUGINS", "").split(",")


class SamplingParams:
    def __init__(self, **kw):
        self.max_tokens = kw["max_tokens"]


class _Metrics:
    def __init__(self, n):
        self.scheduled_ts, self.first_token_ts = 100.0, 100.05
        self.last_token_ts = 100.05 + 0.004 * (n - 1)
        self.num_generation_tokens = n


class _Completion:
    def __init__(self, ids):
        self.token_ids = ids


class _Out:
    def __init__(self, i, n):
        shift = 1 if PLUGIN and os.environ.get("FAKE_VLLM_DIFF") else 0
        self.outputs = [_Completion([(i * 7 + k + shift) % 100 for k in range(n)])]
        self.metrics = _Metrics(n)


class LLM:
    def __init__(self, **kw):
        self.kw = kw
        ready = os.path.join(kw["model"], "core-%d.ready" % os.getpid())
        code = "import vllm, time; open(%r, 'w').close(); time.sleep(600)" % ready
        self.core = subprocess.Popen([sys.executable, "-c", code])
        for _ in range(300):
            if os.path.exists(ready):
                break
            time.sleep(0.05)

    def generate(self, prompts, params, use_tqdm=True):
        return [_Out(i, params.max_tokens) for i in range(len(prompts))]

    def start_profile(self):
        pass

    def stop_profile(self):
        d = self.kw["profiler_config"]["torch_profiler_dir"]
        os.makedirs(d, exist_ok=True)
        align = "void vllm_moe_align::(anonymous namespace)::tiny_kernel<int>(int const*)" if PLUGIN \
            else "void vllm::moe::moe_align_block_size_kernel<int>(int const*)"
        ev = step_trace(align, ["execute_context_4(900)_generation_0(0)"]
                        + ["execute_context_0(0)_generation_4(4)"] * 3, 5.0, 20.0, 50.0)
        with gzip.open(os.path.join(d, "dp0_pp0_tp0_dcp0_ep0_rank0.1.pt.trace.json.gz"), "wt") as f:
            json.dump({"traceEvents": ev}, f)
'''


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left to an init that does not reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _fake_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str, env: dict | None = None):
    fake = tmp_path / "fake"
    (fake / "vllm").mkdir(parents=True, exist_ok=True)
    (fake / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    # the tests' folder too: the stand-in writes its trace with fake_trace
    path = [str(fake), str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "out"
    args = ["--out", str(out), "--work", str(tmp_path / "work"), "--prompts", "4", "--max-tokens", "8",
            "--repeats", "2", "--timeout", "60", *extra]
    return offline.main(args), out


def test_driver_end_to_end_with_a_fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _fake_run(tmp_path, monkeypatch)
    printed = capsys.readouterr().out
    assert code == 0, printed
    rows = list(csv.DictReader(open(out / "e2e_offline.csv")))
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("qwen3moe", "vllm"), ("qwen3moe", "plugin"), ("mixtral", "vllm"), ("mixtral", "plugin")]
    by = {(r["model"], r["variant"]): r for r in rows}
    assert by[("qwen3moe", "plugin")]["plugin_processes"] == "2/2"
    assert by[("qwen3moe", "vllm")]["plugin_processes"] == "0/2"
    assert all(r["tokens_identical"] == "True" for r in rows)
    assert float(by[("mixtral", "plugin")]["prefill_align_us"]) == pytest.approx(20.0)
    assert float(by[("mixtral", "plugin")]["decode_align_us"]) == pytest.approx(5.0)
    assert float(by[("mixtral", "vllm")]["engine_decode_ms_per_step"]) == pytest.approx(4.0)
    assert float(by[("mixtral", "vllm")]["engine_prefill_ms"]) == pytest.approx(50.0)
    assert (out / "e2e_offline.md").read_text().count("| qwen3moe |") >= 3
    # every child's process group is gone: the fake engine cores slept 600 s
    for log in (out / "e2e_offline_logs").glob("*.log"):
        for pid in logs.parse_plugin_log(log.read_text()).pids:
            assert not _alive(pid), pid
    # --append: rerun one model, keep the other's rows
    code, _ = _fake_run(tmp_path, monkeypatch, "--model", "mixtral", "--append")
    assert code == 0
    again = list(csv.DictReader(open(out / "e2e_offline.csv")))
    assert [(r["model"], r["variant"]) for r in again] == [(r["model"], r["variant"]) for r in rows]


def test_driver_fails_on_different_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _fake_run(tmp_path, monkeypatch, "--model", "qwen3moe", env={"FAKE_VLLM_DIFF": "1"})
    printed = capsys.readouterr().out
    assert code == 1 and "generated token ids differ (4 of 4 prompts)" in printed
    rows = list(csv.DictReader(open(out / "e2e_offline.csv")))
    assert {r["tokens_identical"] for r in rows} == {"False"}
