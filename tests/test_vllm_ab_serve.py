"""The A/B harness's serving load (benchmarks/vllm_ab/serve/) on CPU: statistics against
known values, command lines (also parsed by the installed vLLM's own CLI
parsers), result JSON, tokenizer, checks, summary and report files, the
model shapes, and whole runs of the driver against the stand-in vLLM
(tests/vllm_serve_standin.py) and of the installed ``vllm bench serve``
against the stand-in server. The GPU runs themselves need vLLM 0.26 and GPUs."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from vllm_serve_standin import write_package

from benchmarks.vllm_ab import environment, logs, models, stats
from benchmarks.vllm_ab.serve import __main__ as serve_main
from benchmarks.vllm_ab.serve import (
    checks,
    cli_check,
    client,
    commands,
    compiled,
    driver,
    engine_metrics,
    gpu_state,
    host_load,
    options,
    ratios,
    report,
    results,
    state,
    summary,
)
from benchmarks.vllm_ab.serve import server as server_mod
from benchmarks.vllm_ab.serve.tokenizer import vocabulary, write_model_tokenizer

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "vllm_serve_standin.py"
T975 = {1: 12.706204736174698, 2: 4.302652729911275, 4: 2.7764451051977987, 9: 2.2621571627409915,
        30: 2.0422724563012373}  # scipy.stats.t.ppf(0.975, df)


def test_t_quantiles_and_beta() -> None:
    for df, want in T975.items():
        assert stats.t_quantile(0.975, df) == pytest.approx(want, rel=1e-9)
    assert stats.t_quantile(0.995, 5) == pytest.approx(4.032142983557536, rel=1e-9)
    assert stats.t_cdf(0.0, 3) == pytest.approx(0.5)
    assert stats.incomplete_beta(1.0, 1.0, 0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        stats.t_quantile(0.4, 3)


def test_intervals_and_verdicts() -> None:
    # sd 1, n 3: 2 -+ 4.302653 / sqrt(3)
    assert stats.mean_interval([1.0, 2.0, 3.0]) == pytest.approx((2.0, -0.4841377, 4.4841377))
    arm = stats.arm_interval([10.0, 30.0, 11.0])
    assert arm.point == 11.0 and arm.n == 3 and arm.low < 17.0 < arm.high
    assert stats.arm_interval([5.0]) == stats.Interval(1, 5.0)
    # log-ratios 0.1, 0.2, 0.3 (mean 0.2, sd 0.1): exp(0.2 -+ 4.302653 * 0.1 / sqrt(3))
    r = stats.paired_ratio([100.0, 50.0, 10.0], [100 * math.exp(0.1), 50 * math.exp(0.2), 10 * math.exp(0.3)])
    assert (r.point, r.low, r.high) == pytest.approx((1.2214028, 0.9527395, 1.5658265))
    assert r.contains_one and stats.verdict(r, True) == stats.NO_DIFFERENCE
    tight = stats.paired_ratio([100.0, 100.0, 100.0], [110.0, 111.0, 112.0])
    assert tight.low > 1.0 and stats.verdict(tight, True) == "plugin better"
    assert stats.verdict(tight, False) == "plugin worse"
    assert stats.verdict(tight, False, "baseline B") == "baseline B worse"  # A/A: the second arm's label
    assert stats.verdict(stats.paired_ratio([1.0], [2.0]), True) == "-"
    with pytest.raises(ValueError):
        stats.paired_ratio([1.0, 2.0], [1.0])


def _spec(**kw: object) -> commands.ServerSpec:
    return commands.ServerSpec(arm="plugin", model="m", model_dir=Path("/models/m"), port=8001, **kw)


def test_serve_command_and_env() -> None:
    plain = commands.serve_command(_spec(), "py")
    assert plain == ["py", "-m", "vllm.entrypoints.cli.main", "serve", "/models/m", "--served-model-name",
                     "m", "--host", "127.0.0.1", "--port", "8001", "--load-format", "dummy"]
    assert commands.non_defaults(_spec()) == []
    full = _spec(tp=2, ep=True, gpu_memory_utilization=0.45, capture_sizes=(1, 2, 4),
                 profile_dir=Path("/t"), custom_all_reduce=False, extra_args=("--x", "1"))
    cmd = commands.serve_command(full, "py")
    for part in (["--tensor-parallel-size", "2"], ["--enable-expert-parallel"],
                 ["--gpu-memory-utilization", "0.45"], ["--cudagraph-capture-sizes", "1", "2", "4"],
                 ["--disable-custom-all-reduce", "--x", "1"]):
        assert " ".join(part) in " ".join(cmd)
    profiler = json.loads(cmd[cmd.index("--profiler-config") + 1])
    assert (profiler["profiler"], profiler["torch_profiler_dir"], profiler["ignore_frontend"]) == \
        ("torch", "/t", True)
    assert len(commands.non_defaults(full)) == 5 and "shortened" in commands.non_defaults(full)[1]
    dp = commands.serve_command(_spec(dp=2, ep=True, executor="ray"), "py")
    assert " ".join(dp).endswith("--data-parallel-size 2 --enable-expert-parallel "
                                 "--distributed-executor-backend ray")
    assert commands.non_defaults(_spec(executor="ray")) == ["--distributed-executor-backend ray"]
    assert (logs.expected_processes(1, 2), logs.expected_processes(2, 2)) == (3, 7)
    assert commands.capture_sizes("default", [1, 32]) is None
    assert commands.capture_sizes("short", [1, 48, 1024]) == (1, 2, 4, 8, 16, 32, 48, 64, 128, 256, 512)
    assert commands.capture_sizes("4, 2,2", [1]) == (2, 4)
    for bad in ("x", "0,1"):
        with pytest.raises(ValueError):
            commands.capture_sizes(bad, [1])
    base = {"PATH": "/bin", "VLLM_MOE_ALIGN_DISABLE": "1"}
    off, on = (commands.server_env(base, a, "plugins-off") for a in ("vllm", "plugin"))
    assert (off["VLLM_PLUGINS"], on["VLLM_PLUGINS"]) == ("", "moe_align")
    assert "VLLM_MOE_ALIGN_DISABLE" not in off and "VLLM_MOE_ALIGN_DISABLE" not in on
    assert on["VLLM_LOGGING_PREFIX"] % {"process": 5} == "[pid=5] " and on["NCCL_NVLS_ENABLE"] == "0"
    d_off, d_on = (commands.server_env(base, a, "disable-env") for a in ("vllm", "plugin"))
    assert d_off["VLLM_PLUGINS"] == d_on["VLLM_PLUGINS"] == "moe_align"
    # the default baseline: every vLLM setting of the arms equal (vLLM hashes its own
    # variables into the torch.compile cache key), only the plugin's switch differs
    assert commands.server_env(base, "vllm") == d_off

    def vllm_vars(env: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k.startswith("VLLM_") and k != "VLLM_MOE_ALIGN_DISABLE"}

    assert vllm_vars(d_off) == vllm_vars(d_on) and d_off["VLLM_MOE_ALIGN_DISABLE"] == "1"
    assert vllm_vars(off) != vllm_vars(on)
    assert d_off["VLLM_MOE_ALIGN_DISABLE"] == "1" and "VLLM_MOE_ALIGN_DISABLE" not in d_on
    client = commands.client_env(base)
    assert client["VLLM_PLUGINS"] == "" and "VLLM_MOE_ALIGN_DISABLE" not in client


def _bench_spec() -> commands.BenchSpec:
    return commands.BenchSpec(_spec(tp=2, ep=True, gpu_memory_utilization=0.45, capture_sizes=(1, 2),
                                    profile_dir=Path("/t"), custom_all_reduce=False),
                              32, 128, 1024, 256, 1007, Path("/r/b.json"), (("ab_arm", "plugin"),))


def test_bench_command() -> None:
    cmd = commands.bench_command(_bench_spec(), "py")
    assert cmd[:5] == ["py", "-m", "vllm.entrypoints.cli.main", "bench", "serve"]
    opts = dict(zip(cmd[5:], cmd[6:]))
    assert opts["--dataset-name"] == "random" and opts["--random-input-len"] == "1024"
    assert opts["--random-output-len"] == "256" and opts["--num-prompts"] == "128"
    assert opts["--max-concurrency"] == "32" and opts["--seed"] == "1007" and opts["--temperature"] == "0"
    assert opts["--port"] == "8001" and opts["--served-model-name"] == "m"
    assert opts["--result-dir"] == "/r" and opts["--result-filename"] == "b.json"
    assert "--ignore-eos" in cmd and "--save-result" in cmd and cmd[-2:] == ["--metadata", "ab_arm=plugin"]


def test_commands_parse_with_the_installed_vllm() -> None:
    """Both command lines through the installed vLLM's own ``serve`` and
    ``bench serve`` parsers (vLLM 0.33 here; every option used also exists
    in 0.26.0's parsers, checked against its source); a bad option fails."""
    pytest.importorskip("vllm.entrypoints.cli.serve")
    serve = commands.serve_command(_bench_spec().server, "py")[3:]
    bench = commands.bench_command(_bench_spec(), "py")[3:]
    keys = ["model_tag", "served_model_name", "port", "load_format", "tensor_parallel_size",
            "enable_expert_parallel", "gpu_memory_utilization", "cudagraph_capture_sizes",
            "profiler_config", "disable_custom_all_reduce", "max_concurrency", "num_prompts",
            "random_input_len", "temperature", "ignore_eos", "metadata", "result_filename", "seed"]
    env = commands.client_env(dict(os.environ))
    dp = commands.serve_command(_spec(dp=2, ep=True, executor="ray"), "py")[3:]
    got = cli_check.parse_all(sys.executable, [serve, bench, serve + ["--no-such-option"]], keys, env)
    dp_keys = ["data_parallel_size", "enable_expert_parallel", "distributed_executor_backend"]
    (d,) = cli_check.check([dp], cli_check.parse_all(sys.executable, [dp], dp_keys, env))
    assert (d["data_parallel_size"], d["enable_expert_parallel"], d["distributed_executor_backend"]) == \
        (2, True, "ray")
    assert "error" in got[2] and "--no-such-option" in got[2]["error"]
    with pytest.raises(cli_check.CommandError, match="serve /models/m: SystemExit"):
        cli_check.check([serve, bench, serve], got)
    s, b = cli_check.check([serve, bench], got[:2])
    assert s["model_tag"] == "/models/m" and s["served_model_name"] in ("m", ["m"])
    assert (s["tensor_parallel_size"], s["enable_expert_parallel"], s["port"]) == (2, True, 8001)
    assert s["cudagraph_capture_sizes"] == [1, 2] and s["disable_custom_all_reduce"] is True
    assert s["gpu_memory_utilization"] == 0.45 and "torch_profiler_dir" in str(s["profiler_config"])
    assert (b["max_concurrency"], b["num_prompts"], b["random_input_len"], b["seed"]) == (32, 128, 1024, 1007)
    assert b["temperature"] == 0.0 and b["ignore_eos"] is True and b["metadata"] == ["ab_arm=plugin"]


# the keys vLLM 0.26.0's `vllm bench serve --save-result` writes (ttft/tpot/itl/e2el alike)
RESULT = {"date": "20260101-000000", "backend": "openai", "model_id": "/m", "num_prompts": 4,
          "max_concurrency": 2, "request_rate": "inf", "duration": 2.0, "completed": 4, "failed": 0,
          "total_input_tokens": 4096, "total_output_tokens": 1024, "request_throughput": 2.0,
          "output_throughput": 512.0, "total_token_throughput": 2560.0, "mean_ttft_ms": 40.0,
          "median_ttft_ms": 38.0, "std_ttft_ms": 3.0, "p99_ttft_ms": 50.0, "mean_tpot_ms": 7.5,
          "median_tpot_ms": 7.0, "p99_tpot_ms": 9.0, "median_itl_ms": 7.1, "median_e2el_ms": 1900.0}


def test_result_parsing(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"completed": 1}) + "\n" + json.dumps(RESULT) + "\n")  # --append-result
    data = results.read_result(path)
    rec = results.fill(results.JobRecord("m", 1, "plugin", 2, 4, 7, "r1-plugin"), data, 4, 256)
    assert rec.ok and rec.error is None
    assert (rec.output_tok_s, rec.median_ttft_ms, rec.median_tpot_ms, rec.failed) == (512.0, 38.0, 7.0, 0)
    bad = results.fill(results.JobRecord("m", 1, "plugin", 2, 4, 7, "x"),
                       {**RESULT, "completed": 3, "failed": 1, "total_output_tokens": 768}, 4, 256)
    assert not bad.ok and "3 of 4 requests completed, 1 failed" in bad.error and "768 output" in bad.error
    no_lat = {k: v for k, v in RESULT.items() if "tpot" not in k and k != "failed"}
    assert results.problems(no_lat, 4, 256) == ["no median_tpot_ms in the result"]
    jsonl = tmp_path / "rounds.jsonl"
    jsonl.write_text(rec.to_json() + "\n" + rec.to_json()[:20])  # a line cut short
    assert results.load_records(jsonl) == [rec]


def test_tokenizer(tmp_path: Path) -> None:
    vocab, special = vocabulary(100, 1, 2)
    assert len(vocab) == 100 and special == {"<unk>": 0, "<s>": 1, "</s>": 2} and vocab["w99"] == 99
    assert vocabulary(10, 0, 2)[1]["<unk>"] == 1
    cfg = models.FULL_MODELS["deepseek-v2-lite"]
    write_model_tokenizer(tmp_path, cfg)
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(tok) == cfg["vocab_size"] and tok.eos_token_id == cfg["eos_token_id"]
    ids = [5, 17, 102399, 3000]
    assert tok.encode(tok.decode(ids), add_special_tokens=False) == ids


def test_greedy_and_plugin_checks() -> None:
    body = checks.completion_payload("m", [[1, 2], [3]], 8)
    assert body["temperature"] == 0.0 and body["return_token_ids"] and body["prompt"] == [[1, 2], [3]]
    answer = {"choices": [{"index": 1, "token_ids": [7, 8]}, {"index": 0, "token_ids": [5, 6]}]}
    assert checks.tokens_from_response(answer, 2) == [[5, 6], [7, 8]]
    assert checks.tokens_from_response({"choices": [{"index": 0, "text": "a"}]}, 1) == ["a"]
    with pytest.raises(ValueError):
        checks.tokens_from_response(answer, 3)
    assert checks.compare_tokens([[1, 2, 3], [4]], [[1, 2, 3], [4]]) is None
    assert checks.compare_tokens([[1, 2, 3], [4]], [[1, 9, 3], [4]]) == \
        "1 of 2 prompts differ (first: prompt 0 at position 1)"
    line = ("[pid={}] INFO 01-01 00:00:00 [runtime.py:1] vllm-moe-align-plugin 0.1.0 on for vLLM 0.26.0 "
            "(vllm 0.17-0.30 contract): ...")
    other = "[pid={}] INFO 01-01 00:00:00 [core.py:1] started"
    text = "\n".join([line.format(1), line.format(2), other.format(3), line.format(3), other.format(4)])
    summary_, problems = checks.plugin_check(text, "plugin", 2)
    assert summary_ == "3/4" and problems == ["process 4: 0 plugin lines (expected 1)"]
    assert checks.plugin_check(text, "vllm", 2)[1] == ["plugin line in the baseline run (pids [1, 2, 3])"]
    assert logs.expected_processes(1) == 2
    # with dependent launch asked for, every process's line must say it is on; without, none may
    pdl = line.replace("): ...", "): kernels: CPU, CUDA (9.0a; programmatic dependent launch on)")
    text = "\n".join([pdl.format(1), line.format(2)])
    assert checks.plugin_check(text, "plugin", 1, dependent_launch=True)[1] == [
        "process 2: the plugin line does not say 'programmatic dependent launch on'"]
    assert checks.plugin_check(text, "plugin", 1)[1] == [
        "process 1: the plugin line says 'programmatic dependent launch on'"]
    both = pdl.format(1) + "\n" + pdl.format(2)
    assert checks.plugin_check(both, "plugin", 1, dependent_launch=True)[1] == []


def _records(ratio: float) -> list[results.JobRecord]:
    out = []
    for rnd, noise in ((1, 1.0), (2, 1.02), (3, 0.98)):
        for arm, f in (("vllm", 1.0), ("plugin", ratio)):
            for c in (1, 8):
                out.append(results.JobRecord("m", rnd, arm, c, 16, rnd, f"r{rnd}", ok=True,
                                             output_tok_s=100.0 * c * noise * f
                                             * (1 + 0.01 * (rnd - 2) * (arm == "plugin")),
                                             median_ttft_ms=20.0 / f, median_tpot_ms=5.0 * noise / f))
    out.append(results.JobRecord("m", 4, "plugin", 1, 16, 4, "r4", ok=False, error="x"))
    return out


def test_mean_ttft_is_reported_beside_the_median(tmp_path: Path) -> None:
    """With few requests the median TTFT can jump by a whole prefill chunk in one arm while the
    mean stays even: both are ratios of their own, with their own verdicts, in the report."""
    recs = []
    for rnd, (jump, mean_noise) in enumerate(((1.09, 1.03), (1.04, 0.97), (1.08, 1.02), (1.05, 0.98)), 1):
        for arm in ("vllm", "plugin"):
            plug = arm == "plugin"
            recs.append(results.JobRecord("m", rnd, arm, 4, 8, rnd, f"r{rnd}", ok=True, output_tok_s=100.0,
                                          median_ttft_ms=400.0 * (jump if plug else 1.0),
                                          mean_ttft_ms=350.0 * (mean_noise if plug else 1.0),
                                          median_tpot_ms=5.0))
    cs = summary.cells(recs)
    assert summary.find(cs, 4, summary.RATIO_ARM, "median_ttft_ms").verdict == "plugin worse"
    mean = summary.find(cs, 4, summary.RATIO_ARM, "mean_ttft_ms")
    assert mean.verdict == stats.NO_DIFFERENCE and mean.interval.n == 4
    md = report.markdown("t", [], [], cs, [4], [], [])
    assert "TTFT ms (mean): plugin/baseline" in md and "TTFT ms (median): plugin/baseline" in md
    # records written before the mean was read have none: no ratio, no verdict, nothing breaks
    old = [results.JobRecord(**{**vars(r), "mean_ttft_ms": None}) for r in recs]
    assert summary.find(summary.cells(old), 4, summary.RATIO_ARM, "mean_ttft_ms").verdict == "-"


def test_summary_and_report(tmp_path: Path) -> None:
    recs = _records(1.05)
    cs = summary.cells(recs)
    tok = summary.find(cs, 8, summary.RATIO_ARM, "output_tok_s")
    assert tok is not None and tok.interval.n == 3 and tok.interval.point == pytest.approx(1.05, rel=1e-3)
    assert tok.verdict == "plugin better" and 1.0 < tok.interval.low < 1.05 < tok.interval.high
    assert summary.find(cs, 1, summary.RATIO_ARM, "median_ttft_ms").verdict == "plugin better"
    assert summary.find(cs, 1, "vllm", "output_tok_s").interval.point == pytest.approx(100.0)
    assert summary.rounds_done(recs, [1, 8]) == 3 and summary.rounds_done(recs[:3], [1, 8]) == 0
    same = summary.cells(_records(1.0))
    assert summary.find(same, 1, summary.RATIO_ARM, "median_tpot_ms").verdict == stats.NO_DIFFERENCE
    # extra rounds: TPOT ratios are exact, tok/s ratios vary +-1% per round (half-width about 2.5%
    # with 3 rounds); a level without records has no interval yet
    assert summary.wide_levels(cs, [1, 8, 64], 0.02) == [1, 8, 64]
    assert summary.wide_levels(cs, [1, 8, 64], 0.05) == [64]
    check = checks.ServerCheck("r1-vllm", "vllm", "0/2", [], [[1]], None, 12.0, reference=True)
    profile = [{"concurrency": 8, "arm": "plugin", "decode_steps": 5, "decode_align_us": 6.5,
                "decode_tokens": 8.0, "decode_align_share": 0.05}]
    setting = {"model": "m", "tp": 1, "ep": False, "strategy": "restart"}
    md = report.write_all(tmp_path / "serve_m", "title", ["line one"], setting, [check], same, [1, 8],
                          profile, ["a problem"])
    assert md == (tmp_path / "serve_m.md").read_text()
    assert "| r1-vllm | baseline | 12 | 0/2 | ok | reference |" in md and "- a problem" in md
    assert stats.NO_DIFFERENCE in md and "| 8 | plugin | - | - | - | - | - | 5 | 8 | - | 6.5 | 5.0% |" in md
    rows = list(csv.DictReader(open(tmp_path / "serve_m.csv")))
    assert list(rows[0]) == list(summary.CSV_COLUMNS) and len(rows) == 2 * len(results.METRICS) * 3
    ratio = next(r for r in rows if r["arm"] == "plugin/vllm" and r["metric"] == "output_tok_s")
    assert float(ratio["ci_low"]) < 1.0 < float(ratio["ci_high"]) and len(ratio["values"].split()) == 3
    pytest.importorskip("matplotlib")
    assert (tmp_path / "serve_m.png").read_bytes()[:4] == b"\x89PNG"


def test_ratios_of_finished_runs_from_their_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The ratio table read back from a run's rounds.jsonl, with the median ITL beside TPOT: in
    these rounds TPOT swings with the prefill stalls (+-8%) while the decode step is 4% faster in
    each, so only ITL is significant; the last record of a (round, arm, level) counts."""
    logs_dir = tmp_path / "serve_m_logs"
    logs_dir.mkdir()
    for rnd, stall in ((1, 1.08), (2, 0.92), (3, 1.0), (4, 1.07)):
        for arm, f in (("vllm", 1.0), ("plugin", 0.96)):
            rec = results.JobRecord("m", rnd, arm, 64, 128, rnd, f"r{rnd}", ok=True, output_tok_s=100.0,
                                    median_ttft_ms=300.0, mean_ttft_ms=310.0,
                                    median_tpot_ms=6.0 * f * (stall if arm == "plugin" else 1.0),
                                    median_itl_ms=5.0 * f * (1.0 + 0.001 * rnd))
            if rnd == 4 and arm == "plugin":  # a load that failed, then its retry
                state.append(logs_dir / state.ROUNDS, {**rec.__dict__, "ok": False, "median_itl_ms": None})
            state.append(logs_dir / state.ROUNDS, rec.__dict__)
    assert ratios.main([str(logs_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## serve_m_logs") and "ITL ms (median): plugin/baseline" in out
    row = next(line for line in out.splitlines() if line.startswith("| 64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    tpot, itl = cells[7:9], cells[9:11]
    assert tpot[1] == stats.NO_DIFFERENCE and itl == ["0.960 [0.960, 0.960]", "plugin better"]
    assert "paired rounds by requests in flight: 64: 4" in out
    assert ratios.main([str(logs_dir), "--aa"]) == 0 and "baseline B/baseline A" in capsys.readouterr().out
    assert ratios.main([str(tmp_path / "none_logs")]) == 1
    assert "no measured loads" in capsys.readouterr().err


def test_options_and_model_shapes(tmp_path: Path) -> None:
    a = options.parse_args([])
    assert (a.model, a.concurrency, a.input_len, a.output_len, a.rounds) == \
        (["qwen3-30b-a3b", "deepseek-v2-lite"], [1, 64, 256], 1024, 256, 5)
    assert a.capture is None and a.strategy == "auto" and a.baseline == "disable-env"
    assert [options.num_prompts(a, c) for c in (1, 32, 256)] == [16, 128, 1024]
    seeds = {options.bench_seed(a, r, i) for r in (1, 2, 3) for i in range(3)}
    assert len(seeds) == 9
    for bad in (["--rounds", "2"], ["--model", "llama"], ["--capture-sizes", "x"],
                ["--tag", "../x"], ["--tag", "Profile"], ["--tag", "a_b"]):
        with pytest.raises(SystemExit):
            options.parse_args(bad)
    assert options.choose_strategy("deepseek-v2-lite", a, 140.0)[:2] == ("both-up", 0.45)
    assert options.choose_strategy("qwen3-30b-a3b", a, 140.0)[:2] == ("restart", None)
    assert options.choose_strategy("qwen3-30b-a3b", options.parse_args(["--tp", "2"]), 140.0)[0] == "both-up"
    assert options.choose_strategy("deepseek-v2-lite", a, None)[0] == "restart"
    assert driver.stem_name("m", 1) == "serve_m" and driver.stem_name("m", 2) == "serve_m_tp2"
    assert driver.stem_name("m", 1, (8192, 16), aa=True, pairs=2) == "serve_m_in8192_out16_aa_pairs2"
    assert driver.stem_name("m", 1, pairs=2, tag="profile") == "serve_m_pairs2_profile"
    assert driver.stem_name("m", 1, plugin_first=True, tag="p") == "serve_m_pluginfirst_p"
    assert driver.stem_name("m", 1, dependent_launch=True, tag="p") == "serve_m_pdl_p"
    assert driver.stem_name("m", 2, executor="ray") == "serve_m_tp2_ray"
    with pytest.raises(SystemExit):
        options.parse_args(["--aa", "--dependent-launch"])
    assert driver.stem_name("m", 2, executor="mp") == "serve_m_tp2"
    assert [driver.start_order(k) for k in (0, 1, 2)] == [("vllm", "plugin"), ("plugin", "vllm"),
                                                           ("vllm", "plugin")]
    assert [driver.start_order(k, "plugin") for k in (0, 1)] == [("plugin", "vllm"), ("vllm", "plugin")]
    assert options.parse_args(["--tag", "profile-2"]).tag == "profile-2"
    assert driver.round_order(2, "abab") == ("vllm", "plugin") == driver.round_order(3, "abba")
    assert driver.round_order(2, "abba") == ("plugin", "vllm")
    shapes = {n: (models.moe_shape(c), models.param_count(c) / 1e9, c["num_hidden_layers"])
              for n, c in models.FULL_MODELS.items()}
    assert shapes["qwen3-30b-a3b"][0] == (128, 8) and shapes["qwen3-30b-a3b"][2] == 48
    assert shapes["deepseek-v2-lite"][0] == (64, 6) and shapes["mixtral-8x7b"][0] == (8, 2)
    for name, published in (("qwen3-30b-a3b", 30.5), ("deepseek-v2-lite", 15.7), ("mixtral-8x7b", 46.7)):
        assert shapes[name][1] == pytest.approx(published, abs=0.1)
    transformers = pytest.importorskip("transformers")
    for name, cfg in models.FULL_MODELS.items():
        got = transformers.AutoConfig.from_pretrained(str(models.write_model(name, tmp_path / name)))
        assert got.model_type == cfg["model_type"] and got.num_experts_per_tok == cfg["num_experts_per_tok"]


def _standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """The stand-in as package ``vllm`` on PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", f"{write_package(tmp_path / 'fake')}{os.pathsep}{ROOT}")
    monkeypatch.setenv("STANDIN_START_S", "0.2")
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def _run(tmp_path: Path, port: int, *extra: str) -> int:
    return serve_main.main(["--model", "deepseek-v2-lite", "--rounds", "3", "--concurrency", "1", "3",
                            "--input-len", "16",
                            "--output-len", "4", "--min-prompts", "3", "--prompts-per-concurrency", "1",
                            "--warmup-output-len", "2", "--greedy-prompts", "3", "--greedy-tokens", "4",
                            "--port", str(port), "--start-timeout", "60", "--bench-timeout", "60",
                            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"),
                            "--no-cli-check", *extra])


def _gone(log_dir: Path) -> None:
    """Every process that logged in a server log has ended (no server outlives its run)."""
    time.sleep(0.5)
    for log in log_dir.glob("server-*.log"):
        for pid in logs.parse_plugin_log(log.read_text()).pids:
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX", pid


def test_driver_both_up_with_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _standin(tmp_path, monkeypatch)
    code = _run(tmp_path, 18431, "--strategy", "both-up", "--profile", "--tp", "2", "--ep",
                "--capture-sizes", "short")
    printed = capsys.readouterr().out
    assert code == 0, printed
    out, logs_dir = tmp_path / "out", tmp_path / "out" / "serve_deepseek-v2-lite_tp2_in16_out4_logs"
    assert printed.count("round 3/3 done") == 1 and "OK: every round finished" in printed
    md = (out / "serve_deepseek-v2-lite_tp2_in16_out4.md").read_text()
    assert "| plugin | plugin |" in md and "4/4 | ok | identical |" in md and "0/4 | ok | reference |" in md
    assert "--cudagraph-capture-sizes 1 2 3 4 8" in md and "shortened" in md and "both-up (chosen" in md
    # the stand-in's traces: prefill 18 us, decode 6 us of align per step, both arms
    assert "| 3 | baseline | 1 | 300 | 1.0 | 18.0 |" in md and "| 3 | plugin | 1 | 300 | 1.0 | 18.0 |" in md
    # the same compiled graph on both servers; the decode kernels side by side
    assert md.count("| ok | reference | ") == 1
    assert md.count(" (2 pieces) | k939 | 11 sizes, 1-512 | 8192 |") == 2  # one cache: VLLM_PLUGINS equal
    assert "### Kernels per decode step, concurrency 3" in md
    assert "| vllm_moe_align::tiny_kernel<>() | 0.00 | 0.00 | 1.00 | 6.00 | +6.00 |" in md
    assert "every server used one torch.compile cache folder" in md
    # how busy the stand-in server's and the client's processes were, per arm and level
    assert "## The host during the measured loads" in md and "| 3 | plugin | 3 | " in md
    # what the stand-in's /metrics counted over each load: 3 requests of 4 tokens, a token a step,
    # each gap about the stand-in's 2 ms delay a token
    assert "## The engine during the measured loads" in md
    # the first server traced afresh (another cache key) and was restarted once; the second loaded
    assert printed.count("traced the model afresh") == 1 and "vllm traced the model afresh" in printed
    assert "| all 3 kernels | 2.0 | 46.0 | 2.0 | 46.0 | +0.00 |" in md
    assert (logs_dir / "graph-vllm.py").read_text() == (logs_dir / "graph-plugin.py").read_text()
    rows = list(csv.DictReader(open(out / "serve_deepseek-v2-lite_tp2_in16_out4.csv")))
    assert {(r["concurrency"], r["arm"]) for r in rows} == {(c, a) for c in ("1", "3")
                                                           for a in ("vllm", "plugin", "plugin/vllm")}
    assert all(r["rounds"] == "3" for r in rows)
    recs = results.load_records(logs_dir / "rounds.jsonl")
    assert len(recs) == 12 and all(r.ok for r in recs) and {r.server for r in recs} == {"vllm", "plugin"}
    assert [r.arm for r in recs[:4]] == ["vllm", "plugin", "vllm", "plugin"]  # per level, paired
    assert all(r.engine_steps == 12 and r.preemptions == 0 and r.engine_itl_fast_share == 1.0 for r in recs)
    assert all(r.engine_itl_mean_ms is not None and 2.0 <= r.engine_itl_mean_ms < 10.0 for r in recs), recs
    assert (logs_dir / "progress.log").read_text().count("round 2 ") == 4
    # one load generator served every load: warm-up, profile and rounds
    pids = {line.rsplit("(process ", 1)[1] for log in logs_dir.glob("*.log")
            for line in log.read_text().splitlines() if line.startswith("stand-in bench:")}
    assert len(list(logs_dir.glob("bench-*.log"))) == 12 and len(pids) == 1, pids
    _gone(logs_dir)


def test_driver_dependent_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """--dependent-launch: VLLM_MOE_ALIGN_PDL=1 in the plugin arm only (one in
    the caller's environment reaches neither), results under _pdl, the arms
    line says so, and a plugin server whose line does not say it is on fails
    its check."""
    _standin(tmp_path, monkeypatch, VLLM_MOE_ALIGN_PDL="1")
    assert "VLLM_MOE_ALIGN_PDL" not in commands.server_env(dict(os.environ), "plugin")
    env = commands.server_env(dict(os.environ), "plugin", dependent_launch=True)
    assert env["VLLM_MOE_ALIGN_PDL"] == "1"
    assert "VLLM_MOE_ALIGN_PDL" not in commands.server_env(dict(os.environ), "vllm", dependent_launch=True)
    code = _run(tmp_path, 18481, "--strategy", "both-up", "--concurrency", "2", "--rounds", "3",
                "--dependent-launch")
    printed = capsys.readouterr().out
    assert code == 0, printed
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_pdl.md").read_text()
    assert "plugin `VLLM_PLUGINS=moe_align VLLM_MOE_ALIGN_PDL=1` (programmatic dependent launch)" in md
    assert md.count(" | 2/2 | ok | ") == 1 and md.count(" | 0/2 | ok | ") == 1
    monkeypatch.setenv("STANDIN_NO_PDL", "1")  # a plugin that did not turn it on
    code = _run(tmp_path / "again", 18483, "--strategy", "both-up", "--concurrency", "2", "--rounds", "3",
                "--dependent-launch")
    printed = capsys.readouterr().out
    assert code == 1 and "does not say 'programmatic dependent launch on'" in printed, printed


def test_driver_restart_fails_on_tokens_and_plugin_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _standin(tmp_path, monkeypatch, STANDIN_DIFF="1", STANDIN_MAIN_ONLY="1")
    code = _run(tmp_path, 18441, "--strategy", "restart", "--order", "abba", "--concurrency", "2",
                "--tp", "2", "--baseline", "plugins-off")
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert "r1-plugin: greedy tokens: 3 of 3 prompts differ (first: prompt 0 at position 0)" in printed
    assert "0 plugin lines (expected 1)" in printed
    logs_dir = tmp_path / "out" / "serve_deepseek-v2-lite_tp2_in16_out4_logs"
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_tp2_in16_out4.md").read_text()
    assert "compile cache: 2 different torch.compile cache folders" in md
    servers = sorted(p.name for p in logs_dir.glob("server-*.log"))
    assert servers == [f"server-r{r}-{a}.log" for r in (1, 2, 3) for a in ("plugin", "vllm")]
    recs = results.load_records(logs_dir / "rounds.jsonl")
    assert [(r.round, r.arm) for r in recs] == [(1, "vllm"), (1, "plugin"), (2, "plugin"), (2, "vllm"),
                                                (3, "vllm"), (3, "plugin")]
    _gone(logs_dir)


def test_driver_records_a_failed_load_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A load whose client raises is a failed record with the client's
    error; the other level's loads of the same process still count."""
    _standin(tmp_path, monkeypatch, STANDIN_BENCH_FAIL="3")
    assert _run(tmp_path, 18491, "--strategy", "both-up") == 1
    printed = capsys.readouterr().out
    assert "round 1 vllm c=3: vllm bench serve: RuntimeError: stand-in bench: asked to fail at " \
           "concurrency 3 (log bench-r1-vllm-c3.log)" in printed, printed
    recs = results.load_records(tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_logs" / "rounds.jsonl")
    assert [(r.concurrency, r.ok) for r in recs] == ([(1, True)] * 2 + [(3, False)] * 2) * 3


def test_driver_extra_rounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """--max-rounds: rounds after --rounds for the levels still wider than
    --target-width (both strategies), none when every level is narrow enough."""
    _standin(tmp_path, monkeypatch)
    assert _run(tmp_path, 18501, "--strategy", "both-up", "--max-rounds", "5", "--target-width", "1e-9") == 0
    printed = capsys.readouterr().out
    assert printed.count("extra round 4 done (c=1, 3: still wider than +-0%)") == 1, printed
    assert printed.count("extra round 5 done") == 1 and "extra round 6" not in printed
    logs_dir = tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_logs"
    recs = results.load_records(logs_dir / "rounds.jsonl")
    assert sorted({r.round for r in recs}) == [1, 2, 3, 4, 5] and len(recs) == 5 * 2 * 2
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4.md").read_text()
    assert "then extra rounds, up to 5 in all" in md and "| 1 | baseline | 5 |" in md
    # restart strategy, every level narrow enough at once: no extra round. The
    # stand-in's timings are wall-clock (any width may be missed on a busy
    # machine), so the levels' widths are the ones the driver is told here;
    # wide_levels itself is tested on fixed cells above.
    asked: list[tuple[list[int], float]] = []
    real_wide_levels = summary.wide_levels

    def none_wide(cs: list[summary.Cell], concurrency: list[int], width: float) -> list[int]:
        asked.append((concurrency, width))
        return []

    monkeypatch.setattr(summary, "wide_levels", none_wide)
    assert _run(tmp_path, 18505, "--strategy", "restart", "--concurrency", "2", "--max-rounds", "4",
                "--target-width", "0.5") == 0
    printed = capsys.readouterr().out
    assert "extra round" not in printed and printed.count("starting the ") == 6
    assert asked == [([2], 0.5)]
    monkeypatch.setattr(summary, "wide_levels", real_wide_levels)
    assert _run(tmp_path, 18507, "--strategy", "restart", "--concurrency", "2", "--max-rounds", "4",
                "--target-width", "1e-9") == 0
    printed = capsys.readouterr().out
    assert "extra round 4 done (c=2" in printed and "server-r4-plugin.log" in printed


def test_driver_server_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """--server-pairs 2: rounds 1-2 on the first pair (baseline started first,
    on the first port), rounds 3-4 on a fresh pair started plugin first; the
    time budget before each start counts the starts still ahead, not one
    start too many."""
    _standin(tmp_path, monkeypatch)
    steps: list[tuple[str, ...]] = []
    monkeypatch.setattr(driver.ModelRun, "budget", lambda self, *s: steps.append(s))
    assert _run(tmp_path, 18511, "--strategy", "both-up", "--rounds", "4", "--server-pairs", "2") == 0
    printed = capsys.readouterr().out
    starts = [line.split("starting the ")[1].split(" (log")[0] + " " + line.split("port ")[1].split(":")[0]
              for line in printed.splitlines() if "starting the " in line]
    assert starts == ["baseline server 18511", "plugin server 18512", "plugin server 18511",
                      "baseline server 18512"], printed
    assert [s for s in steps if "start" in s] == [("start", "start", "round"), ("start", "round")] * 2
    # its own files and --resume state: a one-pair run's rounds are not this run's
    assert not (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_logs").exists()
    recs = results.load_records(tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_pairs2_logs"
                                / "rounds.jsonl")
    assert sorted({(r.round, r.server) for r in recs}) == [
        (1, "plugin"), (1, "vllm"), (2, "plugin"), (2, "vllm"),
        (3, "plugin-2"), (3, "vllm-2"), (4, "plugin-2"), (4, "vllm-2")]
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_pairs2.md").read_text()
    assert "2 server pairs" in md and md.count("| ok | identical |") == 3, md
    by_pair = md.split("## By server pair")[1]
    assert "| 1 | 1: baseline first | 2 |" in by_pair and "| 3 | 2: plugin first | 2 |" in by_pair, by_pair


def test_driver_first_started_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--first-started plugin: the plugin's server starts first (first port)
    in the first pair and the baseline's in the second; the run keeps its
    own files (``_pluginfirst``) and its report names the order."""
    _standin(tmp_path, monkeypatch)
    assert _run(tmp_path, 18531, "--strategy", "both-up", "--rounds", "4", "--server-pairs", "2",
                "--first-started", "plugin") == 0
    printed = capsys.readouterr().out
    starts = [line.split("starting the ")[1].split(" (log")[0] + " " + line.split("port ")[1].split(":")[0]
              for line in printed.splitlines() if "starting the " in line]
    assert starts == ["plugin server 18531", "baseline server 18532", "baseline server 18531",
                      "plugin server 18532"], printed
    assert not (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_pairs2.md").exists()
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_pairs2_pluginfirst.md").read_text()
    assert "started plugin first in odd pairs and baseline first in even ones" in md, md
    by_pair = md.split("## By server pair")[1]
    assert "| 1 | 1: plugin first | 2 |" in by_pair and "| 3 | 2: baseline first | 2 |" in by_pair, by_pair


@pytest.mark.parametrize("first", ["baseline", "plugin"])
def test_dry_run_shows_the_first_start(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       first: str) -> None:
    """--dry-run lists the servers as the first pair starts them, each on the
    port it gets there, and the client on the baseline's port."""
    assert serve_main.main(["--model", "deepseek-v2-lite", "--strategy", "both-up", "--port", "18600",
                            "--first-started", first, "--dry-run", "--no-cli-check",
                            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]) == 0
    lines = capsys.readouterr().out.splitlines()
    servers = [(line.split(" server:")[0].strip(), line.split("--port ")[1].split()[0])
               for line in lines if " server:" in line]
    other = "plugin" if first == "baseline" else "baseline"
    assert servers == [(first, "18600"), (other, "18601")], lines
    client = next(line for line in lines if "client, round 1" in line)
    assert f"--port {dict(servers)['baseline']} " in client, client


def test_bench_client_timeout_and_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load past its timeout kills the load generator's group; the next
    load starts a fresh one; a load that raises is a failed load, not a dead client."""
    _standin(tmp_path, monkeypatch, STANDIN_BENCH_FAIL="7")
    model = models.write_model("deepseek-v2-lite", tmp_path / "m")
    spec = commands.ServerSpec("vllm", "deepseek-v2-lite", model, 18495)
    server = subprocess.Popen([sys.executable, str(STANDIN), *commands.serve_command(spec, "x")[3:]],
                              stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    bench = commands.BenchSpec(spec, 2, 2, 8, 2, 5, tmp_path / "r.json")
    bench_client = client.BenchClient(sys.executable, ROOT, tmp_path / "client.log")
    try:
        for _ in range(50):
            if not server_mod.port_free("127.0.0.1", 18495):
                break
            time.sleep(0.2)
        monkeypatch.setenv("STANDIN_BENCH_SLEEP", "30")
        assert bench_client.run(bench, tmp_path / "a.log", timeout=3) is None
        assert bench_client.proc is None and "timed out after 3 s" == bench_client.last_error
        monkeypatch.delenv("STANDIN_BENCH_SLEEP")
        assert bench_client.run(bench, tmp_path / "b.log", timeout=60) == 0, (tmp_path / "b.log").read_text()
        assert json.loads(bench.result_file.read_text())["completed"] == 2
        first = bench_client.proc.pid
        bad = dataclasses.replace(bench, concurrency=7)
        assert bench_client.run(bad, tmp_path / "c.log", timeout=60) == 1
        assert bench_client.last_error == "RuntimeError: stand-in bench: asked to fail at concurrency 7"
        assert bench_client.last_error in (tmp_path / "c.log").read_text()
        assert bench_client.run(bench, tmp_path / "d.log", timeout=60) == 0 and bench_client.proc.pid == first
    finally:
        bench_client.close()
        os.killpg(server.pid, 9)
        server.wait()


def test_driver_data_parallel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """tp=2 x dp=2 with expert parallelism and the mp executor: the options
    reach the server, every one of its 7 processes (API server, 2 engine
    cores, 4 workers) logs the plugin line once in the plugin arm, each of
    the 4 GPU ranks writes a trace, and the files carry _tp2_dp2."""
    _standin(tmp_path, monkeypatch)
    code = _run(tmp_path, 18511, "--strategy", "restart", "--tp", "2", "--dp", "2", "--ep",
                "--executor", "mp", "--concurrency", "2", "--profile")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "--tensor-parallel-size 2 --data-parallel-size 2 --enable-expert-parallel " \
           "--distributed-executor-backend mp" in printed
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_tp2_dp2_in16_out4.md").read_text()
    assert "tp=2, dp=2 ep, 16 in / 4 out" in md and "tp=2, dp=2, expert parallel, mp executor;" in md
    assert md.count("| 7/7 | ok | ") == 3 and md.count("| 0/7 | ok | ") == 3
    rows = list(csv.DictReader(open(tmp_path / "out" / "serve_deepseek-v2-lite_tp2_dp2_in16_out4.csv")))
    assert {(r["tp"], r["dp"], r["ep"]) for r in rows} == {("2", "2", "True")}
    assert "RAY_DEDUP_LOGS" not in md


def test_driver_ray_executor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """--executor ray: the option reaches the servers, the files carry _ray
    (apart from an mp run's), and the report says Ray's log folding is off,
    which every server's environment has."""
    _standin(tmp_path, monkeypatch)
    code = _run(tmp_path, 18521, "--strategy", "both-up", "--tp", "2", "--ep", "--executor", "ray",
                "--concurrency", "2", "--rounds", "3")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "--distributed-executor-backend ray" in printed
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_tp2_ray_in16_out4.md").read_text()
    assert "tp=2, expert parallel, ray executor;" in md and "`RAY_DEDUP_LOGS=0`" in md
    assert md.count("| 4/4 | ok | ") == 1 and md.count("| 0/4 | ok | ") == 1
    assert commands.server_env({}, "plugin")["RAY_DEDUP_LOGS"] == "0"


def test_aa_with_the_second_server_varied(tmp_path: Path) -> None:
    """--aa-second-arg: only the A/A run's second server gets the extra vllm serve argument (the
    report's server line lists the options both get; its arms line names the varied one); its own
    file names; refused in an A/B run, which must differ in the plugin alone."""
    kv = "--kv-cache-memory-bytes=33000000000"
    a = options.parse_args(["--aa", f"--aa-second-arg={kv}", "--serve-arg=--seed=1", "--model",
                            "deepseek-v2-lite"])
    run = driver.ModelRun(a, "deepseek-v2-lite", tmp_path)
    assert run.spec("vllm", "a").extra_args == ("--seed=1",)
    assert run.spec("plugin", "b").extra_args == ("--seed=1", kv)
    assert commands.serve_command(run.spec("plugin", "b"), "python")[-1] == kv
    assert run.stem.name == "serve_deepseek-v2-lite_aa_varied"
    assert driver.stem_name("m", 1, varied=True) == "serve_m"  # only an A/A run is varied
    lines = report.setting_lines(a, "deepseek-v2-lite", run.cfg, "host", "restart", 0, run.spec("vllm", "x"))
    server = next(line for line in lines if line.startswith("server:"))
    arms = next(line for line in lines if line.startswith("arms:"))
    assert "--seed=1" in server and "kv-cache-memory" not in server
    assert f"the second server alone also gets `{kv}`" in arms
    with pytest.raises(SystemExit):
        options.parse_args([f"--aa-second-arg={kv}"])


def test_driver_aa_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    """A/A: both servers run the baseline (no plugin line anywhere, vLLM's
    kernels in both profiles), results under their own name, the ratio
    labelled second server over first; a graph that would differ only with
    the plugin on stays the same."""
    _standin(tmp_path, monkeypatch, STANDIN_GRAPH_DIFF="1")
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([1980, 1755], [0x4]))
    code = _run(tmp_path, 18471, "--strategy", "both-up", "--aa", "--profile", "--concurrency", "2",
                "--input-len", "1024", "--output-len", "4")
    printed = capsys.readouterr().out
    assert code == 0, printed
    out = tmp_path / "out"
    md = (out / "serve_deepseek-v2-lite_in1024_out4_aa.md").read_text()
    assert "A/A, vLLM's moe_align_block_size in both arms" in md
    assert "ratio B/A is the harness's own bias" in md and md.count(" | 0/2 | ok | ") == 2
    assert "| vllm | baseline A | " in md and "| plugin | baseline B | " in md
    assert "## baseline B/baseline A" in md and "| 2 | baseline B | 1 | " in md
    assert "tiny_kernel" not in md and "no plugin align kernel" not in md
    rows = list(csv.DictReader(open(out / "serve_deepseek-v2-lite_in1024_out4_aa.csv")))
    assert {(r["mode"], r["input_len"], r["output_len"]) for r in rows} == {("aa", "1024", "4")}
    assert "baseline B c=2" in printed
    # each measured load carries the GPU's clocks (here a stand-in NVML), in its record and its line
    recs = results.load_records(out / "serve_deepseek-v2-lite_in1024_out4_aa_logs" / "rounds.jsonl")
    assert recs and all(r.sm_mhz_min == 1755.0 and r.clock_reasons == 0x4 for r in recs)
    assert printed.count("SM 1755/") == len(recs)


def _fake_nvml(clocks: list[int], reasons: list[int]) -> types.SimpleNamespace:
    """A stand-in ``pynvml`` of one GPU whose SM clock and clock-event reasons
    step through the given values, one per read (the last one repeats)."""
    reads = {"n": 0}

    def clock(handle: object, kind: int) -> int:
        assert handle == "gpu0" and kind == 1
        reads["n"] += 1
        return clocks[min(reads["n"], len(clocks)) - 1]

    def why(handle: object) -> int:
        return reasons[min(reads["n"], len(reasons)) - 1]

    def temperature(handle: object, kind: int) -> int:
        raise RuntimeError("not supported")  # a query the GPU refuses leaves its field None

    def utilization(handle: object) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=(40, 100, 90, 95)[min(reads["n"], 4) - 1], memory=10)

    return types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 1, nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        NVML_CLOCK_SM=1, NVML_TEMPERATURE_GPU=0, nvmlDeviceGetClockInfo=clock,
        nvmlDeviceGetPowerUsage=lambda h: 652_000, nvmlDeviceGetTemperature=temperature,
        nvmlDeviceGetCurrentClocksEventReasons=why, nvmlDeviceGetUtilizationRates=utilization)


def test_host_load(tmp_path: Path) -> None:
    """The busiest process of a process group over a load, from /proc: a fake /proc read exactly
    (a command name with spaces and parentheses, another group, a non-process entry), then real
    processes on Linux: one that computes for the whole load, one that sleeps."""
    tick = os.sysconf("SC_CLK_TCK")
    for pid, group, user, system in ((123, 777, 250, 50), (124, 888, 999, 0), (125, 777, 10, 0)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(
            f"{pid} (vllm (api) x) S 1 {group} {group} 0 -1 4194560 10 0 0 0 {user} {system} 0 0 20 0 9\n")
    (tmp_path / "self").mkdir()
    assert host_load.group_cpu(777, tmp_path) == {123: 300 / tick, 125: 10 / tick}
    assert host_load.busiest({123: 1.0}, {123: 2.0, 126: 0.5}, 2.0) == 0.5
    assert host_load.busiest({}, {}, 1.0) is None
    with host_load.Sampler({"server": 777, "client": None}, proc=tmp_path) as fake:
        pass
    assert fake.summary() == {"server_cpu_top": 0.0, "client_cpu_top": None}
    assert host_load.describe({"server_cpu_top": 0.97, "client_cpu_top": None}) == \
        "  busiest process: server 97% of a core"
    assert host_load.describe({}) == ""
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here")
    # each says when its 0.8 s are over, then stays alive (a server outlives its loads)
    work = {"busy": "t = time.process_time()\nwhile time.process_time() - t < 0.8: pass",
            "idle": "time.sleep(0.8)"}
    for kind, src in work.items():
        script = f"import time\n{src}\nprint(flush=True)\ntime.sleep(60)"
        proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                                stdout=subprocess.PIPE)
        try:
            with host_load.Sampler({"server": proc.pid, "client": None}) as real:
                assert proc.stdout is not None and proc.stdout.readline() == b"\n"
        finally:
            proc.kill()
            proc.wait()
        share = real.summary()["server_cpu_top"]
        # (busy: 1.0 on an idle machine, above 1/3 with three processes to a core; idle: the
        # interpreter's start-up, a few hundredths)
        assert share is not None and (share > 0.3 if kind == "busy" else share < 0.15), (kind, share)


def test_gpu_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a load records of the GPUs: the lowest and median SM clock, the highest power and
    temperature, and only the clock-event reasons that hold the clock down (not idle or the
    application clocks setting)."""
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml([1980, 1980, 1755, 1830], [0x1, 0x0, 0x4, 0x2]))
    read = gpu_state.nvml_reader()
    assert read is not None
    samples = [s for _ in range(4) for s in read()]
    assert [s.sm_mhz for s in samples] == [1980, 1980, 1755, 1830]
    assert samples[0] == gpu_state.Sample(0, 1980.0, 652.0, None, 0x1, 40.0)
    got = gpu_state.summary(samples)
    # the first sample is of an idle GPU (reason 0x1): not among the clocks, but among the busy
    # shares (40, 100, 90, 95: median 92.5), where an idle moment of the load is what counts
    assert got == {"sm_mhz_min": 1755.0, "sm_mhz_median": 1830.0, "power_w_max": 652.0,
                   "temp_c_max": None, "clock_reasons": 0x4, "gpu_busy_median": 92.5}
    assert gpu_state.describe(got) == \
        "  SM 1755/1830 MHz min/median, 652 W, busy 92%, clock held down (reasons 0x4)"
    calm = gpu_state.summary([gpu_state.Sample(0, 1980.0, 400.0, 50.0, 0x0),
                              gpu_state.Sample(0, 345.0, 90.0, 40.0, 0x1)])
    assert calm["clock_reasons"] == 0 and calm["sm_mhz_min"] == 1980.0
    assert gpu_state.describe(calm) == "  SM 1980/1980 MHz min/median, 50 C, 400 W"
    assert gpu_state.summary([]) == dict.fromkeys(got) and gpu_state.describe(gpu_state.summary([])) == ""
    # no NVML: nothing to read, and the sampler is a no-op
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert gpu_state.load_pynvml(vendor="no_such_package_here") is None
    monkeypatch.setattr(gpu_state, "load_pynvml", lambda: None)
    assert gpu_state.nvml_reader() is None
    with gpu_state.Sampler(None) as off:
        pass
    assert off.samples == []
    # the sampler reads at the start, while the load runs, and at the end; a failing read is skipped
    calls = {"n": 0}

    def flaky() -> list[gpu_state.Sample]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("driver busy")
        return [gpu_state.Sample(0, 1000.0 + calls["n"])]

    with gpu_state.Sampler(flaky, interval=0.01) as on:
        time.sleep(0.2)
    assert calls["n"] >= 4 and len(on.samples) == calls["n"] - 1
    assert on.samples[0].sm_mhz == 1001.0 and on.samples[-1].sm_mhz == 1000.0 + calls["n"]


def test_report_gpu_table() -> None:
    """The report's table of the GPUs during each arm's loads: the median of the loads' median
    clocks, the lowest clock, the highest power and temperature, and how many loads had the
    clock held down, by reason name; no table where no load was read."""
    assert gpu_state.reason_names(0x4) == "software power cap"
    assert gpu_state.reason_names(0x4 | 0x20 | 0x1) == "software power cap, software thermal"
    assert gpu_state.reason_names(0x4000) == "0x4000" and gpu_state.reason_names(0) == ""

    def rec(rnd: int, arm: str, c: int, **gpu: float) -> results.JobRecord:
        return results.JobRecord("m", rnd, arm, c, 4, 7, arm, ok=True, **gpu)

    loads = [rec(1, "vllm", 4, sm_mhz_min=1700, sm_mhz_median=1740, power_w_max=690, clock_reasons=0x4,
                 gpu_busy_median=99.0),
             rec(2, "vllm", 4, sm_mhz_min=1650, sm_mhz_median=1760, power_w_max=699, clock_reasons=0x4,
                 gpu_busy_median=97.0),
             rec(3, "vllm", 4, sm_mhz_min=1980, sm_mhz_median=1980, power_w_max=400, temp_c_max=41,
                 clock_reasons=0, gpu_busy_median=61.0),
             rec(1, "plugin", 4, sm_mhz_min=1980, sm_mhz_median=1980, power_w_max=380, clock_reasons=0),
             rec(1, "plugin", 1), rec(1, "vllm", 1)]
    table = report.gpu_table(loads, [1, 4])
    assert table is not None
    rows = [line for line in table.splitlines() if line.startswith("| 4 ")]
    assert rows == ["| 4 | baseline | 3 | 1760 | 1650 | 699 | 41 | 2 (software power cap) | 61-99 |",
                    "| 4 | plugin | 1 | 1980 | 1980 | 380 | - | 0 | - |"], table
    assert not any(line.startswith("| 1 ") for line in table.splitlines())  # no load of c=1 was read
    assert report.gpu_table(loads[-2:], [1, 4]) is None
    md = report.markdown("t", [], [], [], [1, 4], [], [], records=loads)
    assert "## The GPUs during the measured loads" in md and "software power cap" in md
    assert "## The GPUs" not in report.markdown("t", [], [], [], [1, 4], [], [])


def test_report_host_table() -> None:
    """The report's table of the busiest server and client process per arm and level: the
    lowest and highest share of a core over the loads; no table where no load was read."""
    def rec(rnd: int, arm: str, server: float | None, client: float | None) -> results.JobRecord:
        return results.JobRecord("m", rnd, arm, 256, 512, 7, arm, ok=True, server_cpu_top=server,
                                 client_cpu_top=client)

    loads = [rec(1, "vllm", 0.981, 0.64), rec(2, "vllm", 0.99, 0.71), rec(1, "plugin", 0.5, None),
             rec(1, "vllm", None, None)]
    table = report.host_table(loads, [1, 256])
    assert table is not None
    assert [line for line in table.splitlines() if line.startswith("| 256 ")] == [
        "| 256 | baseline | 2 | 0.98-0.99 | 0.64-0.71 |", "| 256 | plugin | 1 | 0.50 | - |"], table
    assert report.host_table(loads[-1:], [256]) is None
    md = report.markdown("t", [], [], [], [256], [], [], records=loads)
    assert "## The host during the measured loads" in md and "never waited" in md


# the shape of vLLM 0.26's /metrics: two engines, help and type lines, buckets, _created samples
METRICS_TEXT = """\
# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{{engine="0",le="0.01",model_name="m, \\"x\\""}} {f0}
vllm:inter_token_latency_seconds_bucket{{engine="0",le="0.025",model_name="m, \\"x\\""}} {n0}
vllm:inter_token_latency_seconds_bucket{{engine="0",le="+Inf",model_name="m, \\"x\\""}} {n0}
vllm:inter_token_latency_seconds_count{{engine="0",model_name="m, \\"x\\""}} {n0}
vllm:inter_token_latency_seconds_sum{{engine="0",model_name="m, \\"x\\""}} {s0}
vllm:inter_token_latency_seconds_bucket{{engine="1",le="0.01",model_name="m"}} {f1}
vllm:inter_token_latency_seconds_count{{engine="1",model_name="m"}} {n1}
vllm:inter_token_latency_seconds_sum{{engine="1",model_name="m"}} {s1}
vllm:inter_token_latency_seconds_created{{engine="1",model_name="m"}} 1.7e+09
vllm:iteration_tokens_total_count{{engine="0",model_name="m"}} {steps}
vllm:iteration_tokens_total_sum{{engine="0",model_name="m"}} 123456.0
vllm:generation_tokens_total{{engine="0",model_name="m"}} {tokens}
vllm:num_preemptions_total{{engine="0",model_name="m"}} {pre}
vllm:request_success_total{{engine="0",finished_reason="length",model_name="m"}} 3.0
"""


def test_engine_metrics_from_two_scrapes() -> None:
    """A load's engine figures are the growth of the server's series between a scrape before
    and one after it, summed over engines: mean gap, the share in the first bucket, steps,
    preemptions; nothing where a scrape is missing."""
    before = engine_metrics.parse(METRICS_TEXT.format(f0=10, n0=20, s0=0.5, f1=0, n1=0, s1=0.0,
                                                      steps=7, tokens=40, pre=0))
    after = engine_metrics.parse(METRICS_TEXT.format(f0=310, n0=620, s0=6.5, f1=100, n1=400, s1=6.0,
                                                     steps=1007, tokens=1040, pre=2))
    assert before[engine_metrics.FAST_BUCKET] == 10 and after[f"{engine_metrics.ITL}_count"] == 1020
    assert "vllm:iteration_tokens_total_sum" not in after  # only the series read
    got = engine_metrics.window(before, after)
    # (6.5 - 0.5 + 6.0) s over (600 + 400) gaps; (300 + 100) of them within 10 ms
    assert got == {"engine_itl_mean_ms": pytest.approx(12.0), "engine_itl_fast_share": pytest.approx(0.4),
                   "engine_steps": 1000.0, "preemptions": 2.0}
    assert engine_metrics.window(None, after) == dict.fromkeys(engine_metrics.FIELDS)
    assert engine_metrics.window(before, {})["engine_itl_mean_ms"] is None
    assert engine_metrics.window(after, after)["engine_itl_mean_ms"] is None  # no gap observed
    assert engine_metrics.describe(got) == ", engine ITL 12.00 ms (40% <= 10 ms), 1000 steps, 2 preemptions"
    assert engine_metrics.describe({**got, "preemptions": 0.0}).endswith("1000 steps")
    assert engine_metrics.describe({}) == ""
    assert engine_metrics.parse("# only comments\n\nnot a sample line at all\n") == {}
    assert engine_metrics.scrape("http://127.0.0.1:9") is None  # nothing listens: no figures, no error


def test_engine_metrics_read_prometheus_clients_own_text() -> None:
    """The text the server's metrics library writes (vLLM's dependency), with vLLM's names,
    label names and ITL buckets, reads back to what was observed."""
    prom = pytest.importorskip("prometheus_client")
    reg = prom.CollectorRegistry()
    labels = ["model_name", "engine"]
    itl = prom.Histogram(engine_metrics.ITL, "gaps", labels, registry=reg,
                         buckets=[0.01, 0.025, 0.05, 0.075, 0.1])
    steps = prom.Histogram(engine_metrics.STEPS, "steps", labels, registry=reg, buckets=[1, 8, 16])
    tokens = prom.Counter("vllm:generation_tokens", "tokens", labels, registry=reg)
    preempted = prom.Counter("vllm:num_preemptions", "preemptions", labels, registry=reg)
    before = engine_metrics.parse(prom.generate_latest(reg).decode())
    for engine, gap in (("0", 0.004), ("0", 0.006), ("0", 0.03), ("1", 0.02)):
        itl.labels("m", engine).observe(gap)
    for engine in ("0", "1"):
        steps.labels("m", engine).observe(12)
        tokens.labels("m", engine).inc(6)
    preempted.labels("m", "1").inc(1)
    got = engine_metrics.window(before, engine_metrics.parse(prom.generate_latest(reg).decode()))
    assert got == {"engine_itl_mean_ms": pytest.approx(15.0), "engine_itl_fast_share": pytest.approx(0.5),
                   "engine_steps": 2.0, "preemptions": 1.0}


def test_engine_metrics_settle_waits_for_the_last_step() -> None:
    """After a load the scrape repeats until the generation tokens have grown by the load's
    output tokens; past the timeout the last scrape counts, and a failed scrape is retried."""
    tokens = engine_metrics.TOKENS
    seen = iter([None, {tokens: 100.0}, {tokens: 130.0}, {tokens: 140.0}])
    assert engine_metrics.settle(lambda: next(seen), {tokens: 100.0}, 40, poll=0.0) == {tokens: 140.0}
    slow = iter([{tokens: 110.0}] * 1000)
    t0 = time.monotonic()
    assert engine_metrics.settle(lambda: next(slow), {tokens: 100.0}, 40, timeout=0.1, poll=0.01) == \
        {tokens: 110.0}
    assert time.monotonic() - t0 < 1.0


def test_report_engine_table() -> None:
    """The report's table of what the engine measured per arm and level (lowest-highest over
    the loads); no table where no load has it."""
    def rec(rnd: int, arm: str, itl: float | None, share: float | None = None) -> results.JobRecord:
        return results.JobRecord("m", rnd, arm, 256, 512, 7, arm, ok=True, engine_itl_mean_ms=itl,
                                 engine_itl_fast_share=share, engine_steps=None if itl is None else 1500.0,
                                 preemptions=0.0)

    loads = [rec(1, "vllm", 10.2, 0.41), rec(2, "vllm", 11.31, 0.6), rec(1, "plugin", 9.9),
             rec(3, "vllm", None)]
    table = report.engine_table(loads, [1, 256])
    assert table is not None
    assert [line for line in table.splitlines() if line.startswith("| 256 ")] == [
        "| 256 | baseline | 2 | 10.20-11.31 | 41-60 | 1500 | 0 |",
        "| 256 | plugin | 1 | 9.90 | - | 1500 | 0 |"]
    assert report.engine_table(loads[-1:], [256]) is None
    md = report.markdown("t", [], [], [], [256], [], [], records=loads)
    assert "## The engine during the measured loads" in md and "engine core's clock" in md


def test_gpu_state_loads_the_copy_of_pynvml_that_vllm_ships(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a top-level pynvml, the bindings come from <vllm>/third_party/pynvml.py, loaded by
    path: the vLLM package itself is not imported."""
    pkg = tmp_path / "vendor_standin"
    (pkg / "third_party").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('the package must not be imported')\n")
    # as vLLM's copy does at import: it finds itself in sys.modules
    (pkg / "third_party" / "pynvml.py").write_text(
        "import sys\nNVML_CLOCK_SM = 1\nWHO = 'the vendored copy'\nassert sys.modules[__name__].WHO\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.delitem(sys.modules, gpu_state.VENDORED_NAME, raising=False)
    module = gpu_state.load_pynvml(vendor="vendor_standin")
    assert module is not None and module.WHO == "the vendored copy" and "vendor_standin" not in sys.modules
    assert gpu_state.load_pynvml(vendor="vendor_standin") is module  # loaded once per process


def test_driver_fails_on_a_different_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _standin(tmp_path, monkeypatch, STANDIN_GRAPH_DIFF="1")
    assert _run(tmp_path, 18481, "--strategy", "both-up", "--concurrency", "2") == 1
    printed = capsys.readouterr().out
    assert "plugin: compiled graph " in printed and "(3 pieces) differs from the first server's" in printed
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4.md").read_text()
    assert md.count("(2 pieces) |") == 1 and "(3 pieces): DIFFERS |" in md


def test_compile_facts_from_a_log(tmp_path: Path) -> None:
    graph = tmp_path / "cache" / "rank_0_0" / "backbone"
    graph.mkdir(parents=True)
    (graph / "computation_graph.py").write_text("submod_0 submod_1 submod_1 submod_12\n")
    log = (f"(EngineCore pid=5) INFO Using cache directory: {graph} for vLLM's torch.compile\n"
           "INFO Initializing ... \"cudagraph_capture_sizes\": [512, 8, 4, 2, 1], ...\n"
           "INFO Chunked prefill is enabled with max_num_batched_tokens=2048.\n")
    info = compiled.read(log)
    assert info.graph is not None and info.graph.endswith(" (3 pieces)") and len(info.graph) == 23
    assert (info.capture_sizes, info.max_num_batched_tokens) == ("5 sizes, 1-512", 2048)
    assert compiled.read("nothing logged") == compiled.CompileInfo(None, None, None)
    assert compiled.compare(info.graph, info.graph) is None and compiled.compare(None, "x") is None
    assert "differs" in compiled.compare(info.graph, "abc (2 pieces)")
    assert report.short_kernel("void ns::k<int, (ns::E)1>(ns::P<int> const*)") == "ns::k<>()"
    assert report.short_kernel("a|b" * 40, 10) == "a/ba/ba..."
    assert report.short_kernel("void ns::k<a::b<c, d>, e>(x)", depth=1) == "ns::k<a::b<>, ...>()"
    assert report.short_kernel("void ns::k<a::b<c, d>, e>(x)", depth=2) == "ns::k<a::b<c, ...>, ...>()"
    # two kernels that share a short name are told apart, the others keep theirs
    attn = "void cutlass::device_kernel<flash::FlashAttnFwdSm90<cute::C<64>, 2> >(flash::P)"
    combine = "void cutlass::device_kernel<flash::FlashAttnFwdCombine<cute::C<8>, 5> >(flash::P)"
    twins = ["void t::k<1>(int)", "void t::k<2>(int)"]
    labels = report.kernel_labels([attn, combine, "void ns::k<int>(int)", *twins])
    assert labels[attn] == "cutlass::device_kernel<flash::FlashAttnFwdSm90<> >()"
    assert labels[combine] == "cutlass::device_kernel<flash::FlashAttnFwdCombine<> >()"
    assert labels["void ns::k<int>(int)"] == "ns::k<>()"
    assert [labels[t] for t in twins] == ["t::k<1>()", "t::k<2>()"]
    same = ["void u::k<1>(int)", "void u::k<1>(float)"]
    assert [report.kernel_labels(same)[n] for n in same] == ["u::k<1>() #2", "u::k<1>() #1"]


def test_real_bench_client_against_the_standin(tmp_path: Path) -> None:
    """The installed ``vllm bench serve`` with the harness's command line,
    tokenizer and result reader, against the stand-in server: as its own
    process and through the harness's long-lived load generator."""
    pytest.importorskip("vllm.benchmarks.serve")
    model = models.write_model("qwen3-30b-a3b", tmp_path / "model")
    write_model_tokenizer(model, models.FULL_MODELS["qwen3-30b-a3b"])
    spec = commands.ServerSpec("vllm", "qwen3-30b-a3b", model, 18451)
    env = commands.server_env(dict(os.environ), "vllm")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # it imports benchmarks
    server = subprocess.Popen([sys.executable, str(STANDIN), *commands.serve_command(spec, "x")[3:]], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    bench_client = client.BenchClient(sys.executable, ROOT, tmp_path / "client.log")
    try:
        bench = commands.BenchSpec(spec, 3, 6, 64, 8, 5, tmp_path / "res" / "r.json", (("ab_arm", "vllm"),))
        (tmp_path / "res").mkdir()
        out = subprocess.run(commands.bench_command(bench, sys.executable), capture_output=True, text=True,
                             env=commands.client_env(dict(os.environ)), timeout=300)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        # the same loads through one long-lived load generator: vLLM's own parser and main
        twice = [dataclasses.replace(bench, seed=seed, result_file=tmp_path / "res" / f"w{seed}.json")
                 for seed in (5, 6)]
        for b in twice:
            code = bench_client.run(b, b.result_file.with_suffix(".log"), timeout=300)
            assert code == 0, b.result_file.with_suffix(".log").read_text()[-3000:]
        assert bench_client.proc is not None and bench_client.proc.poll() is None
    finally:
        bench_client.close()
        os.killpg(server.pid, 9)
        server.wait()
    worker = [results.read_result(b.result_file) for b in twice]
    assert [(w["completed"], w["total_input_tokens"], w["ab_arm"]) for w in worker] == \
        [(6, 6 * 64, "vllm")] * 2
    data = results.read_result(bench.result_file)
    assert data["ab_arm"] == "vllm" and data["completed"] == 6
    assert data["total_input_tokens"] == 6 * 64  # the tokenizer is exact: prompts of 64 tokens
    rec = results.fill(results.JobRecord("q", 1, "vllm", 3, 6, 5, "s"), data, 6, 8)
    assert rec.ok, rec.error
    assert rec.output_tok_s > 0 and rec.median_ttft_ms > 0 and rec.median_tpot_ms > 0


def test_driver_time_budget_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Each server start takes 1.5 s: after the first arm, start + arm (>= 1.5 s)
    # does not fit a 2.5 s budget however fast the machine is.
    _standin(tmp_path, monkeypatch, STANDIN_START_S="1.5")
    opts = ("--strategy", "restart", "--concurrency", "2")
    assert _run(tmp_path, 18461, *opts, "--time-budget", "2.5") == 1
    printed = capsys.readouterr().out
    assert "STOPPED: time budget: start + arm" in printed and "--resume" in printed
    logs_dir = tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_logs"
    assert [(r.round, r.arm) for r in results.load_records(logs_dir / "rounds.jsonl")] == [(1, "vllm")]
    assert "0 of 3 rounds complete" in (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4.md").read_text()
    assert _run(tmp_path, 18461, *opts, "--resume") == 0, capsys.readouterr().out
    recs = results.load_records(logs_dir / "rounds.jsonl")
    assert [(r.round, r.arm) for r in recs] == [(r, a) for r in (1, 2, 3) for a in ("vllm", "plugin")]
    md = (tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4.md").read_text()
    assert "3 of 3 complete" in md and md.count("| ok | identical |") == 5 and "| ok | reference |" in md


def test_resume_on_another_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A paired round is measured on one machine: resumed elsewhere, a round
    begun on the first machine is measured again in both arms; the restarted
    server's check replaces the earlier one; a round whose arms ended up on
    two machines is named in the report."""
    _standin(tmp_path, monkeypatch, STANDIN_START_S="1.5")
    opts = ("--strategy", "restart", "--concurrency", "2")
    monkeypatch.setattr(environment, "machine_id", lambda: "first")
    monkeypatch.setattr(environment, "device_name", lambda: "1x GPU-A")
    assert _run(tmp_path, 18471, *opts, "--time-budget", "2.5") == 1
    capsys.readouterr()
    logs_dir = tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4_logs"
    monkeypatch.setattr(environment, "machine_id", lambda: "second")
    monkeypatch.setattr(environment, "device_name", lambda: "1x GPU-B")
    assert _run(tmp_path, 18471, *opts, "--resume") == 0
    printed = capsys.readouterr().out
    assert "round(s) 1: not yet done in every arm, and measured in part on another machine" in printed
    recs = results.load_records(logs_dir / "rounds.jsonl")
    assert [(r.round, r.arm, r.machine) for r in recs] == (
        [(1, "vllm", "first")] + [(r, a, "second") for r in (1, 2, 3) for a in ("vllm", "plugin")])
    md_path = tmp_path / "out" / "serve_deepseek-v2-lite_in16_out4.md"
    md = md_path.read_text()
    assert md.count("| r1-vllm |") == 1 and "machines:" not in md and "3 of 3 complete" in md
    # both machines recorded themselves; the report names the one whose loads it reports
    machines = state.load_machines(logs_dir)
    assert list(machines) == ["first", "second"] and machines["first"]["line"].startswith("1x GPU-A; ")
    assert md.splitlines()[2].startswith("- 1x GPU-B; ") and "GPU-A" not in md
    # a round complete in both arms stays as it is, on two machines: the report names it
    lines = (logs_dir / "rounds.jsonl").read_text().splitlines()
    moved = [ln.replace('"second"', '"third"') if '"round": 2, "arm": "plugin"' in ln else ln for ln in lines]
    (logs_dir / "rounds.jsonl").write_text("\n".join(moved) + "\n")
    # written again on a machine that measures nothing: the report keeps the machines of the loads
    monkeypatch.setattr(environment, "device_name", lambda: "1x GPU-C")
    assert _run(tmp_path, 18471, *opts, "--resume") == 0
    printed = capsys.readouterr().out
    assert "starting the " not in printed and "not yet done in every arm" not in printed
    md = md_path.read_text()
    assert "- machines: round(s) 2 ran their arms on different machines" in md
    assert md.splitlines()[2].startswith("- 1x GPU-B; ") and "GPU-C" not in md
    assert list(state.load_machines(logs_dir)) == ["first", "second"]


def test_drop_unpaired_elsewhere() -> None:
    def rec(rnd: int, arm: str, c: int, machine: str | None, ok: bool = True) -> results.JobRecord:
        return results.JobRecord("m", rnd, arm, c, 1, 0, "s", machine=machine, ok=ok)

    recs = [rec(1, "vllm", 1, "a"), rec(1, "plugin", 1, "a"),   # paired on a: kept
            rec(1, "vllm", 8, "a"), rec(1, "plugin", 8, "a", ok=False),  # unpaired, on a: dropped
            rec(2, "vllm", 1, None),                              # unknown machine: kept
            rec(3, "plugin", 1, "b")]                             # unpaired, here: kept
    keep, rounds = state.drop_unpaired_elsewhere(recs, "b", ("vllm", "plugin"))
    assert keep == [recs[0], recs[1], recs[4], recs[5]] and rounds == [1]
    assert state.drop_unpaired_elsewhere(recs, "a", ("vllm", "plugin")) == (recs[:4] + recs[4:5], [3])
    assert state.mixed_machine_rounds(recs) == []
    assert state.mixed_machine_rounds(recs + [rec(2, "plugin", 1, "x"), rec(2, "vllm", 1, "y")]) == [2]


def test_wheelhouse_serve_profile() -> None:
    """The serving profile: the offline profile's pins plus the server's, nothing bundled and
    left out at once, FlashAttention 3 and FlashMLA kept (vLLM's default backends on Hopper)."""
    from tools.wheelhouse import cli, spec

    here = ROOT / "tools" / "wheelhouse"
    serve = spec.load_profile(here / "vllm-0.26-serve.ini")
    offline = spec.load_profile(here / "vllm-0.26.ini")
    pins = spec.exact_pins(serve.requirements)
    assert pins is not None and set(offline.requirements) < set(serve.requirements) and serve.no_deps
    assert {"uvicorn", "prometheus-fastapi-instrumentator", "watchfiles"} <= set(pins)
    assert not set(pins) & set(serve.left_out) and serve.placeholders == {}
    assert {"vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so", "vllm/_flashmla_C.abi3.so"} <= set(serve.required)
    assert not any("fa3" in p or "flashmla" in p for p in serve.strip)
    assert (serve.python_version, serve.platform, serve.target_packages) == \
        (offline.python_version, offline.platform, offline.target_packages)
    assert cli.main(["pins", "--profile", str(here / "vllm-0.26-serve.ini")]) == 0
