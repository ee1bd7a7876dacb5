"""The serving benchmark's report: markdown, CSV and chart of one model's run.

``<stem>.md`` (``driver.stem_name``): setting, checks (greedy tokens, plugin line per
server start), per arm and concurrency the median and 95% interval of each
metric of ``results.METRICS`` over the rounds, the plugin/baseline ratios with
their 95% intervals and verdicts, the GPUs, the host and the engine during the
loads, and the profiled align time per engine step.
``.csv``: the same numbers in long format (``summary.CSV_COLUMNS``).
``.png``: output tokens/s per arm with interval bars, one panel per
concurrency. Tables come from ``vllm_moe_align_plugin.bench.markdown_table``,
the CSV and chart writers from ``benchmarks.vllm_ab.report``.
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from benchmarks.vllm_ab.models import moe_shape, param_count
from benchmarks.vllm_ab.report import Bar, fmt, write_csv, write_interval_png
from benchmarks.vllm_ab.stats import Interval
from vllm_moe_align_plugin.bench import markdown_table

from . import engine_metrics, gpu_state
from .checks import ServerCheck
from .commands import ARM_LABELS, ARMS, ServerSpec, arm_labels, non_defaults
from .profiling import STEP_KINDS
from .results import METRICS, JobRecord
from .summary import CSV_COLUMNS, RATIO_ARM, Cell, csv_rows, find

PAIRS_NOTE = ("Each server pair's rounds on their own, ratios as above. The pairs differ in which "
              "arm's server started first (and listens on the first port); a ratio that follows the "
              "start order, not the arm, is the servers' bias, which the pooled ratio above averages.")
STATS_NOTE = (
    "Each round runs both arms on the same load (same prompts: the seed is the same for both "
    "arms of a round and differs between rounds and levels, so prefix caching never reuses an "
    "earlier round's prompts). Per arm: median over the rounds and, in brackets, the 95% "
    "t-interval of the mean over the rounds (with fewer than 6 rounds no distribution-free "
    "interval for a median reaches 95%). Ratio plugin/baseline: geometric mean of the per-round "
    "ratios with the 95% t-interval of the paired log-ratios, back-transformed; 'no significant "
    "difference' where that interval contains 1. TTFT and TPOT per round: the medians (and for TTFT "
    "also the mean) over that round's requests as `vllm bench serve` reports them "
    "(`median_ttft_ms`, `mean_ttft_ms`, `median_tpot_ms`); ITL: the median gap between two "
    "streamed tokens over all of that round's requests (`median_itl_ms`), i.e. a decode step "
    "without a prefill chunk in it, where TPOT also averages in the chunks that stalled each "
    "request; engine ITL: the mean of the same gaps on the engine core's clock, from the "
    "server's `vllm:inter_token_latency_seconds` histogram read before and after the load (the "
    "API server's and the client's time left out); output tok/s: its `output_throughput`. "
    "With few requests per load the median TTFT moves in whole prefill-chunk times when one "
    "request's place in the queue changes; the mean moves with every request.")
PROFILE_NOTE = (
    "align: GPU time of the align calls inside each engine step's `execute_*` annotation, mean "
    "over steps and workers (the plugin's kernels `vllm_moe_align::*`; vLLM's op kernels with the "
    "fills and the `expert_map[expert_ids]` gather its function launches next to them); share: of "
    "all GPU time in those steps; tokens/step: scheduled tokens per step (routes per align call = "
    "tokens x top-k). mixed: steps with prefill and decode requests (chunked prefill).")


KERNELS_NOTE = (
    "Every GPU kernel and memset of the profiled load's steps of that kind, by name (template "
    "arguments shown only where two kernels would share a name), mean launches and GPU time per "
    "step over the steps and workers; the rows are the kernels whose time differs most between "
    "the arms. With CUDA graphs the kernels are the replayed graph's.")


GPU_NOTE = (
    "Read through NVML every 0.2 s while each load ran, over all GPUs; the clocks leave out the "
    "samples of an idle GPU. A clock held down (power cap, heat) slows a load whatever its arm: "
    "where it held in one arm's loads and not in the other's, a ratio measures the card too. GPU "
    "busy: NVML's share of time in which a kernel ran; a GPU that waits for the host is busy less.")
HOST_NOTE = (
    "CPU time (user + system, all threads) of each process of the server (API server, engine core, "
    "workers) and of the client over each load's wall time, read from /proc at the start and end "
    "of the load; the busiest process of each. Each of these processes runs its Python on one core: "
    "near 1.0 it never waited, and the load's times follow that process rather than the GPU.")
ENGINE_NOTE = (
    "From the server's Prometheus histograms, read before and after each load: gaps between two "
    "tokens of a request on the engine core's clock, the share of them in the histogram's first "
    "bucket, the engine steps that produced tokens and the requests preempted. Where decode-only "
    "steps fall below the bucket's bound and steps with a prefill chunk above it, the share is "
    "that of decode-only steps; near one half, a load's median ITL jumps between the two.")


def start_order_text(a: argparse.Namespace, strategy_why: str) -> str:
    """Which arm's server started first, for the setting line of a both-up
    run (the first started gets the first port)."""
    if not strategy_why.startswith("both-up"):
        return ""
    labels = arm_labels(a.aa)
    arms = ("plugin", "vllm") if a.first_started == "plugin" else ("vllm", "plugin")
    first, other = labels[arms[0]], labels[arms[1]]
    if a.server_pairs == 1:
        return f"; servers started {first} first (the first started gets the first port)"
    return (f"; {a.server_pairs} server pairs, one after the other, each running its block of "
            f"consecutive rounds, started {first} first in odd pairs and {other} first in even ones "
            "(the first started gets the first port)")


def setting_lines(a: argparse.Namespace, model: str, cfg: dict[str, Any], host: str,
                  strategy_why: str, rounds_done: int, spec: ServerSpec) -> list[str]:
    """The report's header list: machine (``host``: GPUs; vLLM), model shape,
    layout, server settings (every non-default option), load, arms."""
    experts, topk = moe_shape(cfg)
    baseline = ("`VLLM_PLUGINS=\"\"` (no general plugin)" if a.baseline == "plugins-off"
                else "`VLLM_PLUGINS=moe_align VLLM_MOE_ALIGN_DISABLE=1` (plugin loaded and switched off: "
                     "vLLM's own function runs, and vLLM's settings equal the plugin arm's)")
    return [
        host,
        f"model: {model} shape ({cfg['architectures'][0]}, {cfg['num_hidden_layers']} layers, "
        f"{experts} experts, top-{topk}, {param_count(cfg) / 1e9:.1f}B parameters), bf16, dummy "
        "weights (`--load-format dummy`), word-level tokenizer of the model's vocabulary",
        f"parallel: tp={a.tp}" + (f", dp={a.dp}" if a.dp > 1 else "")
        + (", expert parallel" if a.ep else "")
        + (f", {a.executor} executor" if a.executor else "") + f"; strategy: {strategy_why}; "
        f"rounds: {rounds_done} of {a.rounds} complete, order {a.order}"
        + start_order_text(a, strategy_why)
        + (f"; then extra rounds, up to {a.max_rounds} in all, of the levels whose TPOT or output tok/s "
           f"ratio interval was wider than +-{a.target_width:.1%} (the tables give each cell's n)"
           if a.max_rounds > a.rounds else ""),
        "server: `vllm serve` with vLLM's defaults (torch.compile + CUDA graphs, chunked prefill, "
        "prefix caching, vLLM's choice of backends); non-default: "
        + ("; ".join(non_defaults(spec)) or "none"),
        f"load: `vllm bench serve` random dataset, {a.input_len} input / {a.output_len} output "
        "tokens, EOS ignored, temperature 0, all requests queued at once with at most c in flight; "
        f"requests per load: max({a.min_prompts}, {a.prompts_per_concurrency} x c); every server "
        f"start first runs each level once with {a.warmup_output_len} output tokens (not measured)",
        (f"arms: A/A, both servers run the baseline {baseline}; the second one stands where the "
         "plugin's server stands in an A/B run (started second, port +1), so the ratio B/A is the "
         "harness's own bias"
         + (f"; the second server alone also gets `{' '.join(a.aa_second_arg)}`, so the ratio is what "
            "that change does" if a.aa_second_arg else "") if a.aa else
         f"arms: baseline {baseline}, plugin `VLLM_PLUGINS=moe_align"
         + (" VLLM_MOE_ALIGN_PDL=1` (programmatic dependent launch)" if a.dependent_launch else "`")
         + "; nothing else differs"),
        "environment of both arms (`benchmarks/vllm_ab/environment.child_env`): spawned workers, a pid "
        "in every log line, `VLLM_USE_FLASHINFER_SAMPLER=0` (FlashInfer is not installed), NVLink "
        "multicast off (`NCCL_NVLS_ENABLE=0`, `VLLM_ALLREDUCE_USE_SYMM_MEM=0`, "
        "`TORCH_SYMM_MEM_DISABLE_MULTICAST=1`, `NVSHMEM_DISABLE_NVLS=1`)"
        + (", Ray's folding of similar log lines off (`RAY_DEDUP_LOGS=0`: each worker's plugin line "
           "stays)" if a.executor == "ray" else ""),
    ]


def fmt_interval(iv: Optional[Interval], digits: int = 1) -> str:
    """``median [low, high]`` (``-`` without values, no brackets without an interval)."""
    if iv is None:
        return "-"
    text = f"{iv.point:.{digits}f}"
    if iv.low is not None and iv.high is not None:
        text += f" [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"
    return text


def _digits(metric: str) -> int:
    return 1 if metric == "output_tok_s" else 2


def arm_table(cs: list[Cell], concurrency: list[int], labels: dict[str, str] = ARM_LABELS) -> str:
    rows = []
    for c in concurrency:
        for arm in ARMS:
            got = [find(cs, c, arm, m) for m, _, _ in METRICS]
            n = max((x.interval.n for x in got if x and x.interval), default=0)
            rows.append([c, labels[arm], n]
                        + [fmt_interval(x.interval if x else None, _digits(m))
                           for x, (m, _, _) in zip(got, METRICS)])
    return markdown_table(["concurrency", "arm", "rounds"] + [f"{label} [95% CI]" for _, label, _ in METRICS],
                          rows, "rlr" + "r" * len(METRICS))


def ratio_table(cs: list[Cell], concurrency: list[int], labels: dict[str, str] = ARM_LABELS) -> str:
    rows = []
    for c in concurrency:
        row: list[Any] = [c]
        for metric, _, _ in METRICS:
            x = find(cs, c, RATIO_ARM, metric)
            row += [fmt_interval(x.interval if x else None, 3), x.verdict if x else "-"]
        rows.append(row)
    headers = ["concurrency"]
    for _, label, higher in METRICS:
        headers += [f"{label}: {ratio_name(labels)} [95% CI] ({'>' if higher else '<'} 1 is better)",
                    "verdict"]
    return markdown_table(headers, rows, "r" + "rl" * len(METRICS))


def pair_table(pairs: list[tuple[str, list[Cell]]], concurrency: list[int],
               labels: dict[str, str] = ARM_LABELS) -> str:
    """TPOT and output tok/s ratios of each server pair on its own (``--server-pairs``):
    a bias of the first-started server shows as ratios that move with the start order."""
    rows = []
    for c in concurrency:
        for name, cs in pairs:
            row: list[Any] = [c, name]
            for metric in ("median_tpot_ms", "output_tok_s"):
                x = find(cs, c, RATIO_ARM, metric)
                row += [x.interval.n if x and x.interval else 0, fmt_interval(x.interval if x else None, 3)]
            rows.append(row)
    return markdown_table(["concurrency", "server pair", "rounds", f"TPOT {ratio_name(labels)} [95% CI]",
                           "rounds", f"output tok/s {ratio_name(labels)} [95% CI]"], rows, "rlrrrr")


def ratio_name(labels: dict[str, str]) -> str:
    """``plugin/baseline`` (A/B) or ``baseline B/baseline A`` (A/A)."""
    return f"{labels['plugin']}/{labels['vllm']}"


def checks_table(checks: list[ServerCheck], labels: dict[str, str] = ARM_LABELS) -> str:
    rows = [[c.tag, labels[c.arm], fmt(c.ready_s, 0), c.processes,
             "; ".join(c.plugin_problems or []) or "ok", c.tokens_verdict, c.graph_verdict,
             c.compile_cache or "-", c.capture_sizes or "-", fmt(c.max_num_batched_tokens)]
            for c in checks]
    return markdown_table(["server start", "arm", "ready after s", "plugin line / processes",
                           "plugin line check", "greedy tokens vs first baseline",
                           "compiled graph (sha256, pieces)", "compile cache", "CUDA-graph sizes",
                           "max_num_batched_tokens"], rows)


def cache_line(checks: list[ServerCheck]) -> Optional[str]:
    """Whether every server used one torch.compile cache (None: none logged)."""
    keys = {c.compile_cache for c in checks if c.compile_cache}
    if not keys:
        return None
    if len(keys) == 1:
        return ("compile cache: every server used one torch.compile cache folder, so both arms ran "
                "the same Inductor kernels")
    return (f"compile cache: {len(keys)} different torch.compile cache folders, so each server may run "
            "Inductor kernels of its own (tuned at run time, their speed can differ between the arms "
            "by tens of us per step)")


def profile_table(rows: list[dict[str, Any]], labels: dict[str, str] = ARM_LABELS) -> str:
    headers = ["concurrency", "arm"]
    for kind in STEP_KINDS:
        headers += [f"{kind}: steps", f"{kind}: tokens/step", f"{kind}: align launches/step",
                    f"{kind}: align us/step", f"{kind}: share"]
    body = []
    for r in rows:
        cells: list[Any] = [r["concurrency"], labels.get(r["arm"], r["arm"])]
        for kind in STEP_KINDS:
            cells += [fmt(r.get(f"{kind}_steps")), fmt(r.get(f"{kind}_tokens"), 0),
                      fmt(r.get(f"{kind}_align_launches"), 1),
                      fmt(r.get(f"{kind}_align_us"), 1), fmt(r.get(f"{kind}_align_share"), -1)]
        body.append(cells)
    return markdown_table(headers, body)


def short_kernel(name: str, width: int = 70, depth: int = 0) -> str:
    """A kernel name for a table: parameter lists dropped, template
    arguments kept to ``depth`` levels of nesting (only the first argument
    of each list; 0: none), ``|`` escaped, at most ``width`` characters."""
    out: list[str] = []
    level, skip_to, close = 0, 0, False  # skip_to: level whose rest is dropped (0: none)
    for ch in name.removeprefix("void "):
        if ch in "<(":
            level += 1
            if not skip_to and (ch == "(" or level > depth):
                skip_to, close = level, False
                out.append("<>" if ch == "<" else "()")
            elif not skip_to:
                out.append(ch)
        elif ch in ">)":
            if not skip_to:
                out.append(ch)
            elif level == skip_to:
                out.append(ch if close else "")
                skip_to = 0
            level = max(level - 1, 0)
        elif not skip_to and ch == "," and level > 0:
            skip_to, close = level, True
            out.append(", ...")
        elif not skip_to:
            out.append(ch)
    text = "".join(out).replace("|", "/")
    return text if len(text) <= width else text[:width - 3] + "..."


def kernel_labels(names: list[str], width: int = 70, max_depth: int = 4) -> dict[str, str]:
    """Short names (``short_kernel``) for ``names``, one per kernel: where two
    kernels share a short name, their template arguments are shown one level
    deeper at a time; kernels that no depth tells apart within ``width``
    keep their deepest name that fits, numbered ``#1``, ``#2``... in the
    order of the full names."""
    labels = {n: short_kernel(n, width) for n in names}
    for depth in range(1, max_depth + 1):
        clash = clashing(labels)
        if not clash:
            return labels
        for n in clash:
            labels[n] = short_kernel(n, width, depth)
    clash = clashing(labels)
    if not clash:
        return labels
    for n in clash:
        fits = [t for t in (short_kernel(n, 10 ** 6, d) for d in range(max_depth + 1)) if len(t) <= width]
        labels[n] = fits[-1] if fits else short_kernel(n, width)
    groups: dict[str, list[str]] = {}
    for n in sorted(clash):
        groups.setdefault(labels[n], []).append(n)
    for text, group in groups.items():
        for i, n in enumerate(group, 1):
            labels[n] = f"{text} #{i}" if len(group) > 1 else text
    return labels


def clashing(labels: dict[str, str]) -> list[str]:
    """The keys of ``labels`` whose value another key shares."""
    count = Counter(labels.values())
    return [n for n, text in labels.items() if count[text] > 1]


def kernel_diff_table(rows: list[dict[str, Any]], concurrency: int, kind: str = "decode",
                      labels: dict[str, str] = ARM_LABELS, top: int = 12) -> Optional[str]:
    """Both arms' kernels per ``kind`` step at one concurrency, side by side:
    the ``top`` kernels with the largest difference in GPU time per step,
    then every kernel together. None when an arm has no such steps."""
    tables = {r["arm"]: r.get(f"{kind}_kernel_table") or {} for r in rows
              if r["concurrency"] == concurrency}
    if not all(tables.get(arm) for arm in ARMS):
        return None
    a, b = tables["vllm"], tables["plugin"]
    names = sorted(set(a) | set(b), key=lambda n: (-abs(b.get(n, [0, 0])[1] - a.get(n, [0, 0])[1]), n))
    body = []
    label = kernel_labels(names)
    for name in names[:top]:
        x, y = a.get(name, [0.0, 0.0]), b.get(name, [0.0, 0.0])
        body.append([label[name], fmt(x[0], 2), fmt(x[1], 2), fmt(y[0], 2), fmt(y[1], 2),
                     f"{y[1] - x[1]:+.2f}"])
    total = [sum(t[n][i] for n in t) for t in (a, b) for i in (0, 1)]
    body.append([f"all {len(names)} kernels", fmt(total[0], 1), fmt(total[1], 1), fmt(total[2], 1),
                 fmt(total[3], 1), f"{total[3] - total[1]:+.2f}"])
    la, lb = labels["vllm"], labels["plugin"]
    return markdown_table(["kernel", f"{la}: launches/step", f"{la}: us/step", f"{lb}: launches/step",
                           f"{lb}: us/step", "difference us/step"], body, "lrrrrr")


def _seen(records: Sequence[JobRecord], field: str, scale: float = 1.0) -> list[float]:
    """``field`` of each of ``records`` that has it, times ``scale``."""
    return [scale * v for v in (getattr(r, field) for r in records) if v is not None]


def gpu_table(records: Sequence[JobRecord], concurrency: list[int],
              labels: dict[str, str] = ARM_LABELS) -> Optional[str]:
    """The GPUs during each arm's measured loads per concurrency (the NVML
    fields of ``gpu_state.summary``); None when no load has them."""
    body = []
    for c in concurrency:
        for arm in ARMS:
            got = [r for r in records if r.ok and r.concurrency == c and r.arm == arm
                   and r.sm_mhz_median is not None and r.sm_mhz_min is not None]
            if not got:
                continue
            mask, held = 0, 0
            for r in got:
                mask |= r.clock_reasons or 0
                held += bool(r.clock_reasons)
            power, temp = _seen(got, "power_w_max"), _seen(got, "temp_c_max")
            busy = _seen(got, "gpu_busy_median")
            body.append([c, labels[arm], len(got), fmt(statistics.median(r.sm_mhz_median for r in got), 0),
                         fmt(min(r.sm_mhz_min for r in got), 0), fmt(max(power), 0) if power else "-",
                         fmt(max(temp), 0) if temp else "-",
                         f"{held} ({gpu_state.reason_names(mask)})" if held else "0",
                         _spread(busy, "{:.0f}")])
    if not body:
        return None
    return markdown_table(["concurrency", "arm", "loads", "SM MHz, median of the loads' medians",
                           "SM MHz, lowest", "power W, highest", "temperature C, highest",
                           "loads with the clock held down (why)", "GPU busy %, loads' medians"],
                          body, "rlrrrrrlr")


def _spread(values: Sequence[float], form: str) -> str:
    """``lowest-highest`` of ``values`` in ``form`` (one value alone; ``-`` for none)."""
    if not values:
        return "-"
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def host_table(records: Sequence[JobRecord], concurrency: list[int],
               labels: dict[str, str] = ARM_LABELS) -> Optional[str]:
    """The busiest server and client process per arm and concurrency over the
    measured loads (``host_load``); None when no load has them."""
    body = []
    for c in concurrency:
        for arm in ARMS:
            got = [r for r in records if r.ok and r.concurrency == c and r.arm == arm
                   and (r.server_cpu_top is not None or r.client_cpu_top is not None)]
            if got:
                body.append([c, labels[arm], len(got), _spread(_seen(got, "server_cpu_top"), "{:.2f}"),
                             _spread(_seen(got, "client_cpu_top"), "{:.2f}")])
    if not body:
        return None
    return markdown_table(["concurrency", "arm", "loads", "busiest server process, cores (lowest-highest)",
                           "busiest client process, cores (lowest-highest)"], body, "rlrrr")


def engine_table(records: Sequence[JobRecord], concurrency: list[int],
                 labels: dict[str, str] = ARM_LABELS) -> Optional[str]:
    """What the engine measured per arm and concurrency over the measured
    loads (``engine_metrics``); None when no load has it."""
    body = []
    for c in concurrency:
        for arm in ARMS:
            got = [r for r in records if r.ok and r.concurrency == c and r.arm == arm
                   and r.engine_itl_mean_ms is not None]
            if got:
                body.append([c, labels[arm], len(got), _spread(_seen(got, "engine_itl_mean_ms"), "{:.2f}"),
                             _spread(_seen(got, "engine_itl_fast_share", 100.0), "{:.0f}"),
                             _spread(_seen(got, "engine_steps"), "{:.0f}"),
                             _spread(_seen(got, "preemptions"), "{:.0f}")])
    if not body:
        return None
    limit = f"{float(engine_metrics.FAST_S) * 1e3:.0f} ms"
    return markdown_table(["concurrency", "arm", "loads", "engine ITL ms, mean (lowest-highest)",
                           f"gaps <= {limit}, % (lowest-highest)", "engine steps (lowest-highest)",
                           "preemptions (lowest-highest)"], body, "rlrrrrr")


def markdown(title: str, setting_lines: list[str], checks: list[ServerCheck], cs: list[Cell],
             concurrency: list[int], profile_rows: list[dict[str, Any]],
             problems: list[str], labels: dict[str, str] = ARM_LABELS,
             pairs: Optional[list[tuple[str, list[Cell]]]] = None,
             records: Sequence[JobRecord] = ()) -> str:
    """The whole report; ``pairs``: each server pair's cells (``--server-pairs``);
    ``records``: the measured loads, for the GPUs' state during them."""
    cache = cache_line(checks)
    parts = [f"# {title}", "", *[f"- {line}" for line in [*setting_lines, *([cache] if cache else [])]], "",
             "## Checks", "", checks_table(checks, labels) if checks else "(no server started)", ""]
    if problems:
        parts += ["Problems:", "", *[f"- {p}" for p in problems], ""]
    parts += ["## Per arm", "", arm_table(cs, concurrency, labels), "",
              f"## {ratio_name(labels)}", "", ratio_table(cs, concurrency, labels), "", STATS_NOTE, ""]
    if pairs:
        parts += ["## By server pair", "", pair_table(pairs, concurrency, labels), "", PAIRS_NOTE, ""]
    gpus = gpu_table(records, concurrency, labels)
    if gpus:
        parts += ["## The GPUs during the measured loads", "", gpus, "", GPU_NOTE, ""]
    host = host_table(records, concurrency, labels)
    if host:
        parts += ["## The host during the measured loads", "", host, "", HOST_NOTE, ""]
    engine = engine_table(records, concurrency, labels)
    if engine:
        parts += ["## The engine during the measured loads", "", engine, "", ENGINE_NOTE, ""]
    if profile_rows:
        parts += ["## Align step, profiled loads (one per arm and concurrency)", "",
                  profile_table(profile_rows, labels), "", PROFILE_NOTE, ""]
        for c in concurrency:
            for kind in ("decode", "mixed"):
                table = kernel_diff_table(profile_rows, c, kind, labels)
                if table:
                    parts += [f"### Kernels per {kind} step, concurrency {c}", "", table, "",
                              KERNELS_NOTE, ""]
    return "\n".join(parts)


def chart(cs: list[Cell], concurrency: list[int], path: Path, title: str,
          labels: dict[str, str] = ARM_LABELS) -> bool:
    """Output tokens/s per arm with 95% interval bars, one panel per concurrency."""
    panels = []
    for c in concurrency:
        bars = []
        for arm in ARMS:
            x = find(cs, c, arm, "output_tok_s")
            iv = x.interval if x else None
            bars.append(Bar(labels[arm], iv.point if iv else None, iv.low if iv else None,
                            iv.high if iv else None))
        ratio = find(cs, c, RATIO_ARM, "output_tok_s")
        note = f"\nratio {fmt_interval(ratio.interval, 3)}" if ratio and ratio.interval else ""
        panels.append((f"concurrency {c}{note}", bars))
    return write_interval_png(panels, path, title + "\nbars: median over rounds; whiskers: 95% CI",
                              "output tokens/s")


def write_all(stem: Path, title: str, setting_lines: list[str], setting: dict[str, Any],
              checks: list[ServerCheck], cs: list[Cell], concurrency: list[int],
              profile_rows: list[dict[str, Any]], problems: list[str],
              labels: dict[str, str] = ARM_LABELS,
              pairs: Optional[list[tuple[str, list[Cell]]]] = None,
              records: Sequence[JobRecord] = ()) -> str:
    """Writes ``stem``.md, .csv and .png; returns the markdown."""
    md = markdown(title, setting_lines, checks, cs, concurrency, profile_rows, problems, labels, pairs,
                  records)
    Path(f"{stem}.md").write_text(md)
    write_csv(csv_rows(cs, setting), Path(f"{stem}.csv"), CSV_COLUMNS)
    chart(cs, concurrency, Path(f"{stem}.png"), title[:150], labels)
    return md
