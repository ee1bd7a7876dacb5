"""What a run's output says about the plugin, per vLLM process.

The plugin logs one "vllm-moe-align-plugin <version> on for vLLM <version>"
line in every process it patches (driver or API server, engine core, each worker). The runs add a
``[pid=N]`` prefix to vLLM's log format (``environment.PID_PREFIX``), so the
lines can be counted per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PLUGIN_LINE = " on for vLLM "  # in the plugin's register() log line
DEPENDENT_LAUNCH_ON = "programmatic dependent launch on"  # in it when VLLM_MOE_ALIGN_PDL=1
PLUGIN_NAME = "vllm-moe-align-plugin"
PID_RE = re.compile(r"\[pid=(\d+)\] (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@dataclass
class PluginLog:
    """What one run's output says about the plugin, per process."""

    pids: list[int] = field(default_factory=list)  # every pid with a vLLM log line
    plugin_lines: dict[int, int] = field(default_factory=dict)  # pid -> count
    dependent_lines: dict[int, int] = field(default_factory=dict)  # of them, with dependent launch on
    warnings: list[str] = field(default_factory=list)  # plugin lines that are not "on for vLLM"

    @property
    def summary(self) -> str:
        with_line = sum(1 for p in self.pids if self.plugin_lines.get(p, 0) == 1)
        return f"{with_line}/{len(self.pids)}"


def parse_plugin_log(text: str) -> PluginLog:
    """Counts, per pid (from the ``[pid=N]`` prefix), the plugin's
    "on for vLLM" lines; collects the plugin's other lines (warnings)."""
    log = PluginLog()
    seen: dict[int, None] = {}
    for line in text.splitlines():
        m = PID_RE.search(line)
        if m is None:
            continue
        pid = int(m.group(1))
        seen.setdefault(pid)
        if PLUGIN_NAME in line:
            if PLUGIN_LINE in line:
                log.plugin_lines[pid] = log.plugin_lines.get(pid, 0) + 1
                if DEPENDENT_LAUNCH_ON in line:
                    log.dependent_lines[pid] = log.dependent_lines.get(pid, 0) + 1
            else:
                log.warnings.append(line.strip())
    log.pids = list(seen)
    return log


def expected_processes(tp: int, dp: int = 1) -> int:
    """The fewest vLLM processes of a run: the driver (or API server), one
    engine core per data-parallel rank, and for tp > 1 one worker per GPU
    (tp == 1 runs the worker in the engine core). With dp > 1 vLLM may start
    more (API servers, a coordinator); each process that logs is checked."""
    return 1 + dp + (tp * dp if tp > 1 else 0)


def check_plugin_log(log: PluginLog, variant: str, tp: int, dp: int = 1,
                     dependent_launch: bool = False) -> list[str]:
    """Problems with ``log`` for a run of ``variant`` (empty: fine); a plugin
    run's lines say programmatic dependent launch is on exactly when
    ``dependent_launch`` asked for it."""
    problems = []
    if len(log.pids) < expected_processes(tp, dp):
        problems.append(f"{len(log.pids)} vLLM processes logged, expected at least "
                        f"{expected_processes(tp, dp)}")
    if variant == "plugin":
        for pid in log.pids:
            n = log.plugin_lines.get(pid, 0)
            if n != 1:
                problems.append(f"process {pid}: {n} plugin lines (expected 1)")
            elif (log.dependent_lines.get(pid, 0) == 1) != dependent_launch:
                problems.append(f"process {pid}: the plugin line "
                                + ("does not say" if dependent_launch else "says")
                                + f" {DEPENDENT_LAUNCH_ON!r}")
        problems += [f"plugin warning: {w}" for w in log.warnings]
    elif log.plugin_lines:
        problems.append(f"plugin line in the baseline run (pids {sorted(log.plugin_lines)})")
    return problems
