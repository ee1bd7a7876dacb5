"""The serving A/B run of one model: servers, paired rounds, checks, reports.

Strategies (``options.choose_strategy``):

- ``restart``: in each round each arm gets a fresh server (start, warm-up,
  checks, one load per concurrency level, stop), arms in the round's order;
- ``both-up``: one server per arm, both up at once on the same GPUs (half the
  memory each, ports P and P+1; started one after the other so vLLM's memory
  profiling of one does not see the other starting); in each round, per
  concurrency level, the arms' loads run back to back in the round's order.
  With ``--server-pairs K`` the rounds are split over K pairs of servers, one
  pair after the other; the arm started first (on the first port) alternates
  between pairs, so a bias of the first or second server (memory placement,
  start order, port) lands in the intervals instead of in one arm.

Round order: ``abab`` puts the baseline first in every round, ``abba``
alternates the first arm between rounds. Every finished load, server check
and profile row is appended to its file at once (``state``), a progress line
is printed (and appended to ``progress.log``), and the report files are
rewritten after every round, so a run cut short keeps what it finished;
``--resume`` continues it (the arm-rounds not yet complete), ``--time-budget``
stops before a server start or round that would not fit. ``--max-rounds N``
adds rounds after ``--rounds``, up to N in all, each of only the levels whose
TPOT or output tok/s ratio interval is still wider than ``--target-width``
(``summary.wide_levels``). With ``--profile``,
each arm's first server runs one profiled load per concurrency before its
measured loads, so a run stopped by its budget keeps its profiles. A server
that traced the model afresh (``compiled.traced_afresh``: the first start on
a cold compile cache) is restarted once before it is used, so that every
measured server shares one torch.compile cache key.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from benchmarks.vllm_ab import environment
from benchmarks.vllm_ab.models import model_config, write_model

from . import (
    checks,
    cli_check,
    compiled,
    engine_metrics,
    gpu_state,
    host_load,
    jobs,
    options,
    report,
    state,
    summary,
)
from .client import BenchClient
from .commands import (
    ARMS,
    SWITCHES,
    BenchSpec,
    ServerSpec,
    arm_labels,
    bench_command,
    client_env,
    serve_command,
    server_env,
    switch_of,
)
from .results import JobRecord
from .server import Server, ServerError
from .tokenizer import write_model_tokenizer

ROOT = Path(__file__).resolve().parents[3]  # the load generator runs here (the harness's package)


class BudgetReached(Exception):
    """The next step would not fit ``--time-budget``."""


def stem_name(model: str, tp: int, load: tuple[int, int] = options.DEFAULT_LOAD,
              aa: bool = False, dp: int = 1, pairs: int = 1, tag: str = "",
              plugin_first: bool = False, dependent_launch: bool = False,
              executor: Optional[str] = None, varied: bool = False) -> str:
    """``serve_<model>``, plus ``_tp<N>`` / ``_dp<N>`` for tensor / data
    parallel runs, plus ``_ray`` for the Ray executor, plus
    ``_in<I>_out<O>`` for a load other than the default, plus ``_aa`` for an
    A/A run (``_aa_varied`` with ``--aa-second-arg``), plus ``_pairs<K>``
    for rounds split over K server pairs, plus
    ``_pluginfirst`` when the plugin's server starts first in the first
    pair, plus ``_pdl`` for ``--dependent-launch``, plus ``_<tag>`` for
    ``--tag``: each setting keeps its own files and ``--resume`` state (a
    resumed run counts the rounds its own state holds, so a run of another
    setting must not read them)."""
    return (f"serve_{model}" + (f"_tp{tp}" if tp > 1 else "") + (f"_dp{dp}" if dp > 1 else "")
            + ("_ray" if executor == "ray" else "")
            + (f"_in{load[0]}_out{load[1]}" if tuple(load) != options.DEFAULT_LOAD else "")
            + ("_aa" if aa else "") + ("_varied" if aa and varied else "")
            + (f"_pairs{pairs}" if pairs > 1 else "")
            + ("_pluginfirst" if plugin_first else "") + ("_pdl" if dependent_launch else "")
            + (f"_{tag}" if tag else ""))


def pair_of(rnd: int, rounds: int, pairs: int) -> int:
    """The server pair (0-based) that runs round ``rnd`` (1-based): the
    ``rounds`` rounds split into ``pairs`` consecutive blocks as evenly as
    they go; extra rounds (``--max-rounds``) run on the last pair."""
    return min((rnd - 1) * pairs // rounds, pairs - 1)


def start_order(pair: int, first: str = "baseline") -> tuple[str, ...]:
    """The arms of server pair ``pair`` (0-based) in the order their servers
    start: ``first`` (``--first-started``) in even pairs, the other arm in
    odd ones."""
    return tuple(reversed(ARMS)) if (pair % 2 == 1) == (first == "baseline") else ARMS


def round_order(rnd: int, order: str) -> tuple[str, ...]:
    """The arms of round ``rnd`` (1-based) in the order they run."""
    return tuple(reversed(ARMS)) if order == "abba" and rnd % 2 == 0 else ARMS


def installed_vllm(python: str) -> str:
    """``vLLM <version>`` installed for ``python`` (its metadata; vLLM is
    not imported), ``vLLM ?`` when that fails."""
    code = "import importlib.metadata as m; print(m.version('vllm'))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        return f"vLLM {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else "vLLM ?"
    except (OSError, subprocess.SubprocessError):
        return "vLLM ?"


class ModelRun:
    """One model's run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, model: str, work: Path) -> None:
        self.args, self.model, self.cfg = args, model, model_config(model)
        name = stem_name(model, args.tp, (args.input_len, args.output_len), args.aa, args.dp,
                         args.server_pairs, args.tag, args.first_started == "plugin",
                         args.dependent_launch, args.executor, bool(args.aa_second_arg))
        self.stem = args.out / name
        self.log_dir = args.out / (name + "_logs")
        self.labels = arm_labels(args.aa)
        self.work = work / model
        self.strategy, self.util, self.why = options.choose_strategy(model, args, options.gpu_memory_gib())
        self.records: list[JobRecord] = []
        self.checks: list[checks.ServerCheck] = []
        self.profile_rows: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.reference: Optional[Any] = None  # the first baseline server's greedy tokens
        self.vllm_line = installed_vllm(args.python)
        self.machine = environment.machine_id()  # recorded with every load (state.drop_unpaired_elsewhere)
        self.machine_saved = False  # in state.MACHINES, once this run measured a load here
        self.t0 = time.monotonic()
        self.costs: dict[str, float] = {}  # seconds of the last server start / arm-run / round
        self.restarted_afresh = False  # a server that traced afresh was restarted (once per run)
        # one load generator for the whole run (vLLM imported once, not per load)
        self.client = BenchClient(args.python, ROOT, self.log_dir / "client.log")
        self.gpu = gpu_state.nvml_reader()  # None without NVML: loads then carry no clocks

    # ------------------------------------------------------------------ pieces
    def spec(self, arm: str, tag: str, slot: Optional[int] = None) -> ServerSpec:
        """``arm``'s server; ``slot``: its place in the start order (port
        P + slot), by default the arm's place in ``ARMS``."""
        a = self.args
        return ServerSpec(arm=arm, model=self.model, model_dir=self.work / "model",
                          port=a.port + (ARMS.index(arm) if slot is None else slot),
                          tp=a.tp, ep=a.ep, dp=a.dp, executor=a.executor,
                          gpu_memory_utilization=self.util, capture_sizes=a.capture,
                          profile_dir=self.work / "traces" / "live" if a.profile else None,
                          custom_all_reduce=a.custom_all_reduce,
                          extra_args=tuple(a.serve_arg) + (tuple(a.aa_second_arg) if arm == "plugin" else ()))

    def load(self, rnd: int, level: int, c: int, output_len: Optional[int] = None,
             prompts: Optional[int] = None) -> jobs.Load:
        a = self.args
        return jobs.Load(c, prompts or options.num_prompts(a, c), a.input_len,
                         output_len or a.output_len, options.bench_seed(a, rnd, level))

    def say(self, msg: str) -> None:
        line = f"[{self.model} {time.monotonic() - self.t0:6.0f}s] {msg}"
        print(line, flush=True)
        with open(self.log_dir / "progress.log", "a") as f:
            f.write(line + "\n")

    def budget(self, *steps: str) -> None:
        """Raises ``BudgetReached`` when the known cost of ``steps`` would
        end the run past ``--time-budget``."""
        if self.args.time_budget:
            need = sum(self.costs.get(s, 0.0) for s in steps)
            if time.monotonic() - self.t0 + need > self.args.time_budget:
                raise BudgetReached(f"time budget: {' + '.join(steps)} (about {need:.0f} s) does not fit")

    def start(self, arm: str, tag: str, slot: Optional[int] = None) -> Server:
        """Starts, waits for, warms up and checks one server."""
        a, t0 = self.args, time.monotonic()
        spec = self.spec(arm, tag, slot)
        if spec.profile_dir is not None:
            spec.profile_dir.mkdir(parents=True, exist_ok=True)
        # vLLM's processes start in the work folder, not the repository root:
        # there the source package would shadow an installed plugin
        server = Server(spec, tag, self.log_dir / f"server-{tag}.log",
                        server_env(dict(os.environ), switch_of(arm, a.aa), a.baseline,
                                   a.dependent_launch), a.python,
                        self.work)
        self.say(f"starting the {self.labels[arm]} server (log server-{tag}.log), port {spec.port}: "
                 + " ".join(server.command[2:]))
        server.start()
        try:
            took = self.wait_ready(server)
            if compiled.traced_afresh(server.log_text()) and not self.restarted_afresh:
                # its cache key would differ from every later server's (see compiled.py)
                self.restarted_afresh = True
                self.say(f"{tag} traced the model afresh (no saved AOT compile yet), so its torch.compile "
                         f"cache key differs from later servers'; restarting it once to load what it saved")
                server.stop()
                t0 = time.monotonic()  # the budget's start cost: a start that loads the saved compile
                server.start()
                took = self.wait_ready(server)
            self.say(f"{tag} ready after {took:.0f} s; warming up")
            warm = [self.load(0, i, c, a.warmup_output_len, max(c, 4)) for i, c in enumerate(a.concurrency)]
            self.problems += jobs.warm_up(server, warm, self.log_dir, self.client, a.bench_timeout)
            greedy = checks.GreedySpec(a.greedy_prompts, max_tokens=a.greedy_tokens)
            check = jobs.check_server(server, switch_of(arm, a.aa), greedy, int(self.cfg["vocab_size"]),
                                      self.reference, self.graph_reference(), self.log_dir,
                                      a.dependent_launch)
        except BaseException:
            server.stop()
            raise
        if self.reference is None and arm == "vllm" and check.tokens is not None:
            self.reference, check.reference = check.tokens, True
        # a start of a tag that a resumed run had started before replaces it
        self.checks = [c for c in self.checks if c.tag != tag] + [check]
        state.save_check(self.log_dir, check)
        self.problems += check_problems(check)
        verdict = "OK" if not check.plugin_problems else "PROBLEM"
        self.say(f"{tag} checks: plugin line {check.processes} {verdict}; "
                 f"greedy tokens {check.tokens_verdict}; compiled graph {check.graph_verdict}")
        self.costs["start"] = time.monotonic() - t0
        return server

    def wait_ready(self, server: Server) -> float:
        return server.wait_ready(self.args.start_timeout, progress=lambda s: self.say(
            f"  ... {server.tag} still starting ({s:.0f} s)"))

    def measure(self, server: Server, rnd: int, level: int, c: int) -> JobRecord:
        load = self.load(rnd, level, c)
        rec = JobRecord(model=self.model, round=rnd, arm=server.spec.arm, concurrency=c,
                        num_prompts=load.num_prompts, seed=load.seed, server=server.tag,
                        machine=self.machine)
        path = self.log_dir / f"bench-r{rnd}-{server.spec.arm}-c{c}.json"
        t0 = time.monotonic()
        rec = jobs.run_load(server, load, path, self.client, self.args.bench_timeout, rec, self.gpu)
        self.costs[f"c{c}"] = time.monotonic() - t0  # what an extra round's load of this level costs
        self.records = [r for r in self.records if (r.round, r.arm, r.concurrency) != (rnd, rec.arm, c)]
        self.records.append(rec)
        state.append(self.log_dir / state.ROUNDS, rec.__dict__)
        if not self.machine_saved:
            state.save_machine(self.log_dir, self.machine, self.host_line(), self.why)
            self.machine_saved = True
        head = f"round {rnd} {self.labels[rec.arm]:>10} c={c:<4}"
        if rec.ok:
            self.say(f"{head} {rec.output_tok_s:10.1f} tok/s  TTFT {rec.median_ttft_ms:9.2f} ms  "
                     f"TPOT {rec.median_tpot_ms:7.2f} ms  ({rec.duration_s:.0f} s, "
                     f"{rec.num_prompts} requests){gpu_state.describe(vars(rec))}"
                     f"{host_load.describe(vars(rec))}{engine_metrics.describe(vars(rec))}")
        else:
            self.problems.append(f"round {rnd} {rec.arm} c={c}: {rec.error}")
            self.say(f"{head} FAILED: {rec.error}")
        return rec

    def profile(self, server: Server) -> None:
        a = self.args
        self.say(f"profiling {server.tag}")
        loads = [self.load(options.PROFILE_ROUND, i, c, a.profile_output_len, max(c, 4))
                 for i, c in enumerate(a.concurrency)]
        rows, problems = jobs.profile_server(server, switch_of(server.spec.arm, a.aa), loads,
                                             self.work / "traces" / server.tag, self.log_dir,
                                             self.client, a.bench_timeout)
        self.profile_rows = [r for r in self.profile_rows if r["arm"] != server.spec.arm] + rows
        for row in rows:
            state.append(self.log_dir / state.PROFILE, row)
        self.problems += problems

    def needs_profile(self, arm: str) -> bool:
        return self.args.profile and not any(r["arm"] == arm for r in self.profile_rows)

    def done(self, rnd: int, arm: str, levels: Optional[list[int]] = None) -> bool:
        return state.arm_round_done(self.records, rnd, arm, levels or self.args.concurrency)

    def next_extra(self, tried: set[int]) -> Optional[tuple[int, list[int]]]:
        """The next extra round (``--max-rounds``) not yet tried in this run
        and its levels (those still wider than ``--target-width``); None when
        every level is narrow enough or the extra rounds are used up."""
        a = self.args
        levels = summary.wide_levels(summary.cells(self.records), a.concurrency, a.target_width)
        if not levels:
            return None
        for rnd in range(a.rounds + 1, a.max_rounds + 1):
            if rnd not in tried and not all(self.done(rnd, arm, levels) for arm in ARMS):
                return rnd, levels
        return None

    def extra_rounds(self) -> Iterator[tuple[int, list[int]]]:
        """Each extra round to run, with its levels, while one is left;
        reports the round once its caller has measured it."""
        tried: set[int] = set()
        while (extra := self.next_extra(tried)) is not None:
            tried.add(extra[0])
            yield extra
            self.round_done(*extra)

    def extra_cost(self, levels: list[int], arms: int) -> list[str]:
        """The ``budget`` steps of one extra round: the last load of each level, per arm."""
        return [f"c{c}" for c in levels for _ in range(arms)]

    def round_done(self, rnd: int, levels: Optional[list[int]] = None) -> None:
        cs = summary.cells(self.records, self.labels["plugin"])
        parts = [f"c={c} {x.interval.point:.3f}" for c in self.args.concurrency
                 if (x := summary.find(cs, c, summary.RATIO_ARM, "output_tok_s")) and x.interval]
        head = (f"round {rnd}/{self.args.rounds} done" if levels is None else
                f"extra round {rnd} done (c={', '.join(map(str, levels))}: still wider than "
                f"+-{self.args.target_width:.0%})")
        self.say(f"{head}; tok/s {report.ratio_name(self.labels)} so far: " + (", ".join(parts) or "-"))
        self.write_report()

    # ------------------------------------------------------------------ strategies
    def run_restart(self) -> None:
        a = self.args
        for rnd in range(1, a.rounds + 1):
            for arm in round_order(rnd, a.order):
                if self.done(rnd, arm) and not self.needs_profile(arm):
                    continue
                self.budget("start", "arm")
                server = self.start(arm, f"r{rnd}-{arm}")
                try:
                    if self.needs_profile(arm):
                        self.profile(server)
                    t1 = time.monotonic()
                    for level, c in enumerate(a.concurrency):
                        if not self.done(rnd, arm):
                            self.measure(server, rnd, level, c)
                    self.costs["arm"] = time.monotonic() - t1
                finally:
                    server.stop()
            self.round_done(rnd)
        for rnd, levels in self.extra_rounds():
            for arm in round_order(rnd, a.order):
                if self.done(rnd, arm, levels):
                    continue
                self.budget("start", *self.extra_cost(levels, 1))
                server = self.start(arm, f"r{rnd}-{arm}")
                try:
                    for c in levels:
                        if not self.done(rnd, arm, [c]):
                            self.measure(server, rnd, a.concurrency.index(c), c)
                finally:
                    server.stop()

    def run_both_up(self) -> None:
        a = self.args
        todo = [rnd for rnd in range(1, a.rounds + 1) if not all(self.done(rnd, arm) for arm in ARMS)]
        profile = any(self.needs_profile(arm) for arm in ARMS)
        extra = self.next_extra(set()) is not None
        earlier = len(self.checks) // 2  # server pairs of runs this one resumes
        for pair in range(a.server_pairs):
            rounds = [rnd for rnd in todo if pair_of(rnd, a.rounds, a.server_pairs) == pair]
            last = pair == a.server_pairs - 1
            if not rounds and not (last and (extra or (profile and not todo))):
                continue
            earlier += 1
            self.run_pair(pair, rounds, f"-{earlier}" if earlier > 1 else "", last)
            profile = False

    def run_pair(self, pair: int, rounds: list[int], suffix: str, last: bool) -> None:
        """One pair of servers (tags ``<arm><suffix>``), started in
        ``start_order(pair)``: the profiles still missing, ``rounds``, and
        on the last pair the extra rounds."""
        a = self.args
        servers: dict[str, Server] = {}
        try:
            arms = start_order(pair, a.first_started)
            for slot, arm in enumerate(arms):
                self.budget(*["start"] * (len(arms) - slot), "round")
                servers[arm] = self.start(arm, arm + suffix, slot)
            for arm in ARMS:
                if self.needs_profile(arm):
                    self.profile(servers[arm])
            for rnd in rounds:
                self.budget("round")
                t0 = time.monotonic()
                for level, c in enumerate(a.concurrency):
                    for arm in round_order(rnd, a.order):
                        self.measure(servers[arm], rnd, level, c)
                self.costs["round"] = time.monotonic() - t0
                self.round_done(rnd)
            if not last:
                return
            for rnd, levels in self.extra_rounds():
                self.budget(*self.extra_cost(levels, len(ARMS)))
                for c in levels:
                    for arm in round_order(rnd, a.order):
                        if not self.done(rnd, arm, [c]):
                            self.measure(servers[arm], rnd, a.concurrency.index(c), c)
        finally:
            for server in servers.values():
                server.stop()

    # ------------------------------------------------------------------ report and run
    def plan(self) -> list[str]:
        """What ``run`` would do: strategy, rounds, files, the servers' and
        the first round's last load's command lines, and whether the
        installed vLLM accepts them."""
        a = self.args
        lines = [f"{self.model}: strategy {self.why}; {a.rounds} rounds, order {a.order}, "
                 f"concurrency {a.concurrency}; results {self.stem}.md/.csv/.png, logs {self.log_dir}"]
        arms = start_order(0, a.first_started) if self.strategy == "both-up" else ARMS
        for arm in arms:
            env = server_env({}, switch_of(arm, a.aa), a.baseline, a.dependent_launch)
            switch = " ".join(f"{k}={shlex.quote(env[k])}" for k in SWITCHES if k in env)
            cmd = serve_command(self.spec(arm, f"r1-{arm}", self.first_slot(arm)), a.python)
            lines.append(f"  {self.labels[arm]} server: {switch} {shlex.join(cmd)}")
        lines.append(f"  client, round 1, c={a.concurrency[-1]}: {shlex.join(self.bench_argv())}")
        if a.cli_check:
            try:
                self.check_commands()
                lines.append(f"  these options parse with the installed {self.vllm_line}")
            except cli_check.CommandError as exc:
                lines.append(f"  PROBLEM: {exc}")
        return lines

    def first_slot(self, arm: str) -> Optional[int]:
        """``arm``'s place in the first start: in the first pair's start
        order when both servers are up (``run_pair``), else None (the arm's
        own port, one server at a time)."""
        if self.strategy != "both-up":
            return None
        return start_order(0, self.args.first_started).index(arm)

    def bench_argv(self) -> list[str]:
        a = self.args
        load = self.load(1, len(a.concurrency) - 1, a.concurrency[-1])
        result = self.log_dir / f"bench-r1-vllm-c{load.concurrency}.json"
        bench = BenchSpec(self.spec("vllm", "r1-vllm", self.first_slot("vllm")), load.concurrency,
                          load.num_prompts, load.input_len, load.output_len, load.seed, result,
                          (("ab_arm", "vllm"),))
        return bench_command(bench, a.python)

    def check_commands(self) -> None:
        """Both arms' server commands and a client command through the
        installed vLLM's parsers (``cli_check``); raises ``CommandError``."""
        argvs = [serve_command(self.spec(arm, "check"), self.args.python)[3:] for arm in ARMS]
        argvs.append(self.bench_argv()[3:])
        cli_check.parse_with_vllm(self.args.python, argvs, ["model_tag"], client_env(dict(os.environ)))

    def graph_reference(self) -> Optional[str]:
        """The compiled-graph digest of the first server that logged one."""
        return next((c.graph for c in self.checks if c.graph), None)

    def host_line(self) -> str:
        """The report's first line for this machine: its GPUs and vLLM."""
        return f"{environment.device_name()}; {self.vllm_line}"

    def write_report(self) -> str:
        a = self.args
        what = ("A/A, vLLM's moe_align_block_size in both arms" if a.aa
                else "plugin vs vLLM's moe_align_block_size")
        title = (f"vLLM serving, {what}: {self.model}"
                 + (f", tp={a.tp}" if a.tp > 1 else "") + (f", dp={a.dp}" if a.dp > 1 else "")
                 + (" ep" if a.ep and a.tp * a.dp > 1 else "")
                 + f", {a.input_len} in / {a.output_len} out")
        done = summary.rounds_done(self.records, a.concurrency)
        # the machines the loads ran on, as each recorded itself; this one's where none did
        ran = state.machines_of(self.records, state.load_machines(self.log_dir))
        host = "; then ".join(dict.fromkeys(m["line"] for m in ran)) or self.host_line()
        why = ran[0]["why"] if ran else self.why
        # the options both servers get (the baseline's: --aa-second-arg is the second server's alone)
        lines = report.setting_lines(a, self.model, self.cfg, host, why, done, self.spec("vllm", "x"))
        setting = {"model": self.model, "tp": a.tp, "dp": a.dp, "ep": a.ep, "strategy": self.strategy,
                   "mode": "aa" if a.aa else "ab", "input_len": a.input_len, "output_len": a.output_len}
        mixed = state.mixed_machine_rounds(self.records)
        if mixed:
            lines.append(f"machines: round(s) {', '.join(map(str, mixed))} ran their arms on different "
                         "machines (a run resumed elsewhere); every other round ran on one machine")
        cs = summary.cells(self.records, self.labels["plugin"])
        pairs = None
        if self.strategy == "both-up" and a.server_pairs > 1:
            of_pair = [[r for r in self.records if pair_of(r.round, a.rounds, a.server_pairs) == k]
                       for k in range(a.server_pairs)]
            pairs = [(f"{k + 1}: {self.labels[start_order(k, a.first_started)[0]]} first",
                      summary.cells(recs, self.labels["plugin"])) for k, recs in enumerate(of_pair)]
        return report.write_all(self.stem, title, lines, setting, self.checks, cs,
                                a.concurrency, self.profile_rows, self.problems, self.labels, pairs,
                                self.records)

    def resume(self) -> None:
        """Reads what an earlier run of the same setting finished."""
        self.records, elsewhere = state.drop_unpaired_elsewhere(
            state.latest_records(self.log_dir), self.machine, ARMS)
        self.checks = state.load_checks(self.log_dir)
        self.reference = state.reference_tokens(self.checks)
        self.profile_rows = state.load_profile_rows(self.log_dir)
        for check in self.checks:
            self.problems += check_problems(check)
        self.say(f"resuming: {len(self.records)} loads, {len(self.checks)} server starts done before")
        if elsewhere:
            self.say(f"round(s) {', '.join(map(str, elsewhere))}: not yet done in every arm, and measured "
                     "in part on another machine; both arms of those levels run again here")

    def run(self) -> list[str]:
        """The whole run; returns the problems found (empty: all checks passed)."""
        if self.args.resume and self.log_dir.exists():
            self.resume()
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir.mkdir(parents=True)
        write_model_tokenizer(write_model(self.model, self.work / "model"), self.cfg)
        self.say(f"strategy {self.why}; logs in {self.log_dir}")
        try:
            if self.args.cli_check:
                self.check_commands()
                self.say(f"the server and client options parse with the installed {self.vllm_line}")
            self.run_restart() if self.strategy == "restart" else self.run_both_up()
        except BudgetReached as exc:
            self.problems.append(f"stopped: {exc}; continue with --resume")
            self.say(f"STOPPED: {exc}; continue with the same options and --resume")
        except (ServerError, cli_check.CommandError) as exc:
            first, *rest = str(exc).splitlines()
            self.problems.append(first + (f" ... {rest[-1].strip()}" if rest else ""))
            self.say(f"STOPPED: {exc}")
        finally:
            self.client.close()
            done = summary.rounds_done(self.records, self.args.concurrency)
            if done < self.args.rounds:
                self.problems.append(f"{done} of {self.args.rounds} rounds complete")
            self.write_report()
        return self.problems


def check_problems(check: checks.ServerCheck) -> list[str]:
    out = [f"{check.tag}: {p}" for p in check.plugin_problems or []]
    out += [f"{check.tag}: {check.graph_problem}"] if check.graph_problem else []
    return out + ([f"{check.tag}: greedy tokens: {check.token_problem}"] if check.token_problem else [])
