"""From the measured loads (``results.JobRecord``) to the A/B summary.

For each concurrency level and metric (``results.METRICS``): per arm the
median and 95% interval over its rounds (``stats.arm_interval``), and the
plugin/baseline ratio with its 95% interval over the rounds where both arms
finished (``stats.paired_ratio``) and the verdict (``stats.verdict``).
Only records with ``ok`` count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

from benchmarks.vllm_ab import stats

from .commands import ARMS
from .results import METRICS, JobRecord

RATIO_ARM = "plugin/vllm"
# long-format CSV: one row per (concurrency, arm or ratio, metric)
# mode: "ab" (plugin vs baseline) or "aa" (baseline vs baseline: the ratio
# row is then the second baseline server over the first)
SETTING_COLUMNS = ("model", "tp", "dp", "ep", "strategy", "mode", "input_len", "output_len")
CSV_COLUMNS = (*SETTING_COLUMNS, "concurrency", "arm", "metric", "rounds",
               "median", "ci_low", "ci_high", "verdict", "values")


@dataclass(frozen=True)
class Cell:
    """One metric of one arm (or of the ratio) at one concurrency."""

    concurrency: int
    arm: str  # "vllm", "plugin" or RATIO_ARM
    metric: str
    interval: Optional[stats.Interval]
    values: tuple[float, ...]
    verdict: str = ""


def by_round(records: Iterable[JobRecord], concurrency: int, arm: str, metric: str) -> dict[int, float]:
    """round -> value of the ok records of one (concurrency, arm)."""
    out = {}
    for r in records:
        value = getattr(r, metric)
        if r.ok and r.concurrency == concurrency and r.arm == arm and value is not None:
            out[r.round] = float(value)
    return out


def cells(records: list[JobRecord], subject: str = "plugin") -> list[Cell]:
    """Every arm cell and ratio cell, by concurrency, then metric; verdicts
    name ``subject``, the second arm as the report calls it."""
    out: list[Cell] = []
    for c in sorted({r.concurrency for r in records}):
        for metric, _, higher in METRICS:
            per_arm = {arm: by_round(records, c, arm, metric) for arm in ARMS}
            for arm in ARMS:
                vals = tuple(per_arm[arm][k] for k in sorted(per_arm[arm]))
                out.append(Cell(c, arm, metric, stats.arm_interval(vals) if vals else None, vals))
            paired = sorted(set(per_arm["vllm"]) & set(per_arm["plugin"]))
            base = [per_arm["vllm"][k] for k in paired]
            plug = [per_arm["plugin"][k] for k in paired]
            ratio = stats.paired_ratio(base, plug) if paired and min(*base, *plug) > 0 else None
            vals = tuple(p / b for b, p in zip(base, plug)) if ratio else ()
            out.append(Cell(c, RATIO_ARM, metric, ratio, vals,
                            stats.verdict(ratio, higher, subject) if ratio else "-"))
    return out


# The ratios that extra rounds (--max-rounds) aim to narrow; TTFT's per-round
# medians vary too much between rounds for a fixed target
TARGET_METRICS = ("median_tpot_ms", "output_tok_s")


def wide_levels(cs: list[Cell], concurrency: list[int], width: float) -> list[int]:
    """The levels whose TPOT or output tok/s ratio has no interval yet or one
    reaching further than ``width`` (relative) from its point on either side."""
    out = []
    for c in concurrency:
        for metric in TARGET_METRICS:
            x = find(cs, c, RATIO_ARM, metric)
            iv = x.interval if x else None
            if iv is None or iv.low is None or iv.high is None or \
                    max(iv.high / iv.point - 1.0, 1.0 - iv.low / iv.point) > width:
                out.append(c)
                break
    return out


def find(cs: list[Cell], concurrency: int, arm: str, metric: str) -> Optional[Cell]:
    return next((x for x in cs if (x.concurrency, x.arm, x.metric) == (concurrency, arm, metric)),
                None)


def csv_rows(cs: list[Cell], setting: dict[str, Any]) -> list[dict[str, Any]]:
    """The long-format CSV rows (``CSV_COLUMNS``); ``setting`` gives the
    ``SETTING_COLUMNS``: model, layout, strategy, mode and the load's lengths."""
    rows = []
    for x in cs:
        iv = x.interval
        rows.append({**{k: setting.get(k) for k in SETTING_COLUMNS},
                     "concurrency": x.concurrency, "arm": x.arm, "metric": x.metric,
                     "rounds": iv.n if iv else 0, "median": iv.point if iv else None,
                     "ci_low": iv.low if iv else None, "ci_high": iv.high if iv else None,
                     "verdict": x.verdict, "values": " ".join(f"{v:.6g}" for v in x.values)})
    return rows


def rounds_done(records: list[JobRecord], concurrency: list[int]) -> int:
    """Rounds in which both arms finished every concurrency level."""
    done = 0
    for rnd in sorted({r.round for r in records}):
        have = {(r.arm, r.concurrency) for r in records if r.round == rnd and r.ok}
        if all((arm, c) in have for arm in ARMS for c in concurrency):
            done += 1
    return done
