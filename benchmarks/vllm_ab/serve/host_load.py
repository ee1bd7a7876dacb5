"""How busy the processes that feed the GPU were during a load.

A load measures the GPU only while the host keeps up with it: vLLM's API
server (one Python process that parses every request and streams every
token), its engine core (the scheduler) and the client (one process that
reads every streamed token) each run on one core at most. When one of them
is busy all the time, the steps wait for it, and the times measured follow
the host rather than the align kernel.

``Sampler`` reads the CPU time (user + system, all threads) of every process
in the given process groups from ``/proc`` at the start and at the end of a
load; ``summary`` gives, per group, the busiest process's CPU time over the
load's wall time: 1.0 means that process never waited (a process that ended
during the load is not counted). Linux only; where ``/proc`` cannot be read
the fields stay None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

PROC = Path("/proc")
# the JobRecord field of each group's busiest process, by the group's name
FIELDS = {"server": "server_cpu_top", "client": "client_cpu_top"}


def group_stats(pgid: int, proc: Path = PROC) -> dict[int, list[str]]:
    """Each process of group ``pgid``: its ``/proc/<pid>/stat`` fields from
    field 3 (the state) on, so field k is at index k - 3: 5 the process
    group, 14 and 15 the user and system time in clock ticks. (The command,
    field 2, is left out: it is in parentheses and may hold spaces.)"""
    out = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid:
            out[int(entry.name)] = fields
    return out


def group_cpu(pgid: int, proc: Path = PROC) -> dict[int, float]:
    """CPU seconds so far of each live process of process group ``pgid``."""
    tick = os.sysconf("SC_CLK_TCK")
    return {pid: (int(f[11]) + int(f[12])) / tick for pid, f in group_stats(pgid, proc).items()}


def busiest(before: Mapping[int, float], after: Mapping[int, float], wall_s: float) -> Optional[float]:
    """The largest CPU time any process spent between the two reads, over
    ``wall_s`` (a process first seen in ``after`` counts from zero)."""
    if not after or wall_s <= 0:
        return None
    return max(after[pid] - before.get(pid, 0.0) for pid in after) / wall_s


class Sampler:
    """``with Sampler({"server": pgid, "client": pgid}) as s: <the load>``,
    then ``s.summary()``: ``FIELDS`` of the named groups (a group given as
    None, or unreadable, gets None)."""

    def __init__(self, groups: Mapping[str, Optional[int]], proc: Path = PROC) -> None:
        self.groups, self.proc = dict(groups), proc
        self.before: dict[str, dict[int, float]] = {}
        self.after: dict[str, dict[int, float]] = {}
        self.wall_s = 0.0
        self._t0 = 0.0

    def _read(self) -> dict[str, dict[int, float]]:
        out = {}
        for name, pgid in self.groups.items():
            if pgid is None:
                continue
            try:
                out[name] = group_cpu(pgid, self.proc)
            except (OSError, ValueError, IndexError):  # no /proc, or a line not as expected
                continue
        return out

    def __enter__(self) -> Sampler:
        self.before, self._t0 = self._read(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self._t0
        self.after = self._read()

    def summary(self) -> dict[str, Optional[float]]:
        return {field: busiest(self.before.get(name, {}), self.after[name], self.wall_s)
                if name in self.after and name in self.before else None
                for name, field in FIELDS.items()}


def describe(fields: Mapping[str, Optional[float]]) -> str:
    """The busiest processes' shares as the end of a progress line ("" when none was read)."""
    parts = [f"{name} {fields[field]:.0%}" for name, field in FIELDS.items()
             if fields.get(field) is not None]
    return f"  busiest process: {', '.join(parts)} of a core" if parts else ""
