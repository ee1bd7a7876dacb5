"""``python -m benchmarks.vllm_ab.serve.ratios LOG_DIR [LOG_DIR ...] [--aa]``:
the ratio table of finished runs, from their logs alone.

Each ``LOG_DIR`` is a run's ``<stem>_logs`` folder; its measured loads
(``rounds.jsonl``, the last record per round, arm and level) are summarised
as the run's own report does (``summary.cells``), with every metric of
``results.METRICS``, so a metric added there can be read off runs made
before it was. ``--aa``: the runs are A/A runs (the labels say so).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from . import report, state, summary
from .commands import arm_labels


def table(log_dir: Path, aa: bool = False) -> str:
    """The ratio table of the run whose logs are in ``log_dir``, then the
    number of paired rounds per level (of its TPOT ratio)."""
    records = state.latest_records(log_dir)
    if not records:
        raise FileNotFoundError(f"{log_dir}: no measured loads ({state.ROUNDS} missing or empty)")
    labels = arm_labels(aa)
    cs = summary.cells(records, labels["plugin"])
    levels = sorted({r.concurrency for r in records})
    rounds = []
    for c in levels:
        x = summary.find(cs, c, summary.RATIO_ARM, "median_tpot_ms")
        rounds.append(f"{c}: {x.interval.n if x and x.interval else 0}")
    return (report.ratio_table(cs, levels, labels)
            + "\n\npaired rounds by requests in flight: " + ", ".join(rounds))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vllm_ab.serve.ratios",
                                 description=__doc__.split("\n\n")[1])
    ap.add_argument("log_dirs", type=Path, nargs="+", metavar="LOG_DIR")
    ap.add_argument("--aa", action="store_true", help="A/A runs (baseline B over baseline A)")
    args = ap.parse_args(argv)
    for log_dir in args.log_dirs:
        try:
            text = table(log_dir, args.aa)
        except FileNotFoundError as exc:
            print(f"ratios: {exc}", file=sys.stderr)
            return 1
        print(f"## {log_dir.name}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
