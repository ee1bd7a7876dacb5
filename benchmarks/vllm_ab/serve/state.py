"""What a run has finished, kept on disk as it goes, so a later run can resume it.

Files in the run's log folder (appended one JSON object a line, so a run
stopped at any moment leaves every finished line readable):

- ``rounds.jsonl``: every measured load (``results.JobRecord``);
- ``checks.jsonl``: every server start's checks (``checks.ServerCheck``
  without its tokens; the tokens are in ``greedy-<tag>.json``);
- ``profile.jsonl``: the profiled loads' rows (``profiling.profile_row``);
- ``machines.jsonl``: each machine that measured loads (``environment.
  machine_id``), with its report line (GPUs; vLLM) and the strategy's reason,
  so that a report written again elsewhere names the machines the loads ran
  on, not the one that writes it.

``--resume`` reads them back: an arm's round counts as done when every
concurrency level of it has an ok record; later records of the same (round,
arm, concurrency) replace earlier ones; the greedy reference is the tokens
of the check marked ``reference``. A paired round is measured on one
machine: a round's level that is not yet done in every arm keeps no record
of another machine (``drop_unpaired_elsewhere``), so a run resumed on a
fresh machine measures that level's arms again, side by side.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from .checks import ServerCheck
from .results import JobRecord, load_records

ROUNDS, CHECKS, PROFILE, MACHINES = "rounds.jsonl", "checks.jsonl", "profile.jsonl", "machines.jsonl"


def append(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short
    return out


def save_check(log_dir: Path, check: ServerCheck) -> None:
    append(log_dir / CHECKS, {k: v for k, v in asdict(check).items() if k != "tokens"})


def load_checks(log_dir: Path) -> list[ServerCheck]:
    """The saved checks, the last one per server tag, with their tokens."""
    by_tag: dict[str, ServerCheck] = {}
    for d in _lines(log_dir / CHECKS):
        check = ServerCheck(**{k: v for k, v in d.items() if k in ServerCheck.__dataclass_fields__})
        greedy = log_dir / f"greedy-{check.tag}.json"
        if greedy.exists():
            check.tokens = json.loads(greedy.read_text())
        by_tag.pop(check.tag, None)
        by_tag[check.tag] = check
    return list(by_tag.values())


def reference_tokens(checks: list[ServerCheck]) -> Optional[Any]:
    return next((c.tokens for c in checks if c.reference and c.tokens is not None), None)


def latest_records(log_dir: Path) -> list[JobRecord]:
    """The measured loads, the last record per (round, arm, concurrency)."""
    by_key: dict[tuple[int, str, int], JobRecord] = {}
    for r in load_records(log_dir / ROUNDS):
        by_key[(r.round, r.arm, r.concurrency)] = r
    return list(by_key.values())


def drop_unpaired_elsewhere(records: list[JobRecord], machine: str,
                            arms: tuple[str, ...]) -> tuple[list[JobRecord], list[int]]:
    """``records`` without those measured on a machine other than
    ``machine`` whose (round, concurrency) has no ok record in some arm of
    ``arms``, and the rounds they came from. Records of an unknown machine
    (written before machines were recorded) are kept."""
    ok = {(r.round, r.concurrency, r.arm) for r in records if r.ok}
    paired = {(rnd, c) for rnd, c, _ in ok if all((rnd, c, arm) in ok for arm in arms)}
    keep, rounds = [], set()
    for r in records:
        if (r.round, r.concurrency) not in paired and r.machine not in (None, machine):
            rounds.add(r.round)
        else:
            keep.append(r)
    return keep, sorted(rounds)


def mixed_machine_rounds(records: list[JobRecord]) -> list[int]:
    """The rounds with a level whose arms were measured on different (known) machines."""
    seen: dict[tuple[int, int], set[str]] = {}
    for r in records:
        if r.machine is not None:
            seen.setdefault((r.round, r.concurrency), set()).add(r.machine)
    return sorted({rnd for (rnd, _), machines in seen.items() if len(machines) > 1})


def save_machine(log_dir: Path, machine: str, line: str, why: str) -> None:
    """Records ``machine`` (once) as one that measured loads of this run."""
    if machine not in load_machines(log_dir):
        append(log_dir / MACHINES, {"machine": machine, "line": line, "why": why})


def load_machines(log_dir: Path) -> dict[str, dict[str, str]]:
    """The recorded machines, by id, in the order they first measured."""
    out: dict[str, dict[str, str]] = {}
    for d in _lines(log_dir / MACHINES):
        if isinstance(d.get("machine"), str):
            out.setdefault(d["machine"], {"line": str(d.get("line", "")), "why": str(d.get("why", ""))})
    return out


def machines_of(records: list[JobRecord], known: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """The recorded machines that measured ``records``, in the order of ``known``."""
    used = {r.machine for r in records}
    return [entry for machine, entry in known.items() if machine in used]


def load_profile_rows(log_dir: Path) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    for row in _lines(log_dir / PROFILE):
        by_key[(row["arm"], row["concurrency"])] = row
    return list(by_key.values())


def arm_round_done(records: list[JobRecord], rnd: int, arm: str, concurrency: list[int]) -> bool:
    """Whether every level of ``arm`` in round ``rnd`` has an ok record."""
    ok = {r.concurrency for r in records if r.round == rnd and r.arm == arm and r.ok}
    return all(c in ok for c in concurrency)
